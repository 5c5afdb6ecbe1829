#!/usr/bin/env python3
"""Checks the TCP proxy the failover tests rely on (tcpproxy.py) against a local echo server:
each control does what the partition and failover tests assume of it. Standard library only.

    python3 tests/failover/selftest.py
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcpproxy import Proxy  # noqa: E402


def echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return

            def echo(c: socket.socket = conn) -> None:
                with c:
                    while data := c.recv(1024):
                        c.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


class ProxyTest(unittest.TestCase):
    def setUp(self) -> None:
        self.srv_a, self.port_a = echo_server()
        self.srv_b, self.port_b = echo_server()
        self.proxy = Proxy(self.port_a)
        self.port = self.proxy.start()
        self.socks: list[socket.socket] = []

    def tearDown(self) -> None:
        self.proxy.close()
        for s in self.socks + [self.srv_a, self.srv_b]:
            s.close()

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        self.socks.append(s)
        return s

    def assert_no_answer(self, s: socket.socket) -> None:
        s.settimeout(0.3)
        with self.assertRaises(TimeoutError):
            s.recv(16)
        s.settimeout(2)

    def test_bytes_pass_both_ways_while_flowing(self) -> None:
        s = self.connect()
        s.sendall(b"ping")
        self.assertEqual(s.recv(16), b"ping")

    def test_a_stall_holds_bytes_and_new_connections_and_flow_delivers_them(self) -> None:
        old = self.connect()
        old.sendall(b"a")
        self.assertEqual(old.recv(16), b"a")
        self.proxy.stall()
        old.sendall(b"held")
        new = self.connect()  # accepted, but not connected onward
        new.sendall(b"new")
        self.assert_no_answer(old)
        self.assert_no_answer(new)
        self.proxy.flow()
        self.assertEqual(old.recv(16), b"held")
        self.assertEqual(new.recv(16), b"new")

    def test_a_cut_closes_every_open_connection_and_new_ones_still_pass(self) -> None:
        first, second = self.connect(), self.connect()
        for s in (first, second):
            s.sendall(b"x")
            self.assertEqual(s.recv(16), b"x")
        self.assertEqual(self.proxy.cut(), 2)
        for s in (first, second):
            try:
                self.assertEqual(s.recv(16), b"")
            except ConnectionResetError:
                pass
        again = self.connect()
        again.sendall(b"y")
        self.assertEqual(again.recv(16), b"y")

    def test_a_switch_sends_new_connections_to_the_new_upstream(self) -> None:
        old = self.connect()
        old.sendall(b"1")
        self.assertEqual(old.recv(16), b"1")
        self.proxy.switch(self.port_b, cut_existing=False)
        self.srv_a.close()  # only the upstream B can answer a new connection now
        new = self.connect()
        new.sendall(b"2")
        self.assertEqual(new.recv(16), b"2")
        old.sendall(b"3")  # kept: still served by A's connection
        self.assertEqual(old.recv(16), b"3")

    def test_an_isolated_connection_stays_open_and_silent_and_resets_when_the_client_speaks(self) -> None:
        waiting, speaking = self.connect(), self.connect()
        for s in (waiting, speaking):
            s.sendall(b"x")
            self.assertEqual(s.recv(16), b"x")
        self.assertEqual(self.proxy.isolate_current(reset_on_send=True), 2)
        self.assert_no_answer(waiting)
        speaking.sendall(b"anyone?")
        try:
            self.assertEqual(speaking.recv(16), b"")
        except ConnectionResetError:
            pass
        fresh = self.connect()
        fresh.sendall(b"z")
        self.assertEqual(fresh.recv(16), b"z")


if __name__ == "__main__":
    unittest.main(verbosity=2)
