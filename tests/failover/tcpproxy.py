"""A TCP proxy the test controls, between Stockroom and PostgreSQL.

It listens on 127.0.0.1 and forwards each connection to 127.0.0.1:<upstream>. The test can:

- `flow()`    pass bytes both ways (the normal state);
- `stall()`   stop forwarding without closing anything: bytes already sent wait in the proxy,
              new connections are accepted but not connected onward — from Stockroom's side the
              database simply stops answering, as when packets are dropped. `flow()` delivers
              what waited, as TCP would once a partition heals;
- `cut()`     close every connection at once (both sides reset);
- `switch(p)` send new connections to another port — the "virtual IP moves to the promoted
              standby" case; `cut_existing` also resets the connections open to the old one
              (as the old host's address answering from a new machine would).

One limit of a proxy as a stand-in for a partition: the proxy's own kernel still answers TCP
keep-alive probes, so a stall can be noticed only by timeouts in the application or the
database (statement, acquire, idle-in-transaction), never by keep-alives.

Runs an asyncio loop on a thread of its own; the control methods may be called from any thread.
Standard library only.
"""

from __future__ import annotations

import asyncio
import threading


class Proxy:
    def __init__(self, upstream: int, name: str = "proxy") -> None:
        self.name = name
        self.upstream = upstream
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.flowing: asyncio.Event | None = None
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self.server: asyncio.base_events.Server | None = None
        self.accepted = 0
        self.isolated: set[asyncio.StreamWriter] = set()  # client sides whose links never flow again
        self.never = asyncio.Event()  # not set: what isolated links wait on
        self.reset_on_send: set[asyncio.StreamWriter] = set()

    # -- control (any thread) --

    def start(self) -> int:
        self.thread.start()
        self._call(self._start())
        return self.port

    def flow(self) -> None:
        self._call(self._set_flowing(True))

    def stall(self) -> None:
        self._call(self._set_flowing(False))

    def cut(self) -> int:
        """Resets every open connection; returns how many."""
        return self._call(self._cut())

    def switch(self, upstream: int, cut_existing: bool = True) -> int:
        self.upstream = upstream
        return self.cut() if cut_existing else 0

    def isolate_current(self, reset_on_send: bool = False) -> int:
        """Stalls every connection open now, for good (the host behind them is gone), while new
        ones flow to the upstream (`switch` picks it); returns how many. With `reset_on_send`
        an isolated connection is reset as soon as the client sends anything on it — what a
        virtual IP moved to another host does (that host answers segments of connections it
        does not know with RST) — while a client that only waits for an answer waits forever."""
        return self._call(self._isolate(reset_on_send))

    def open_connections(self) -> int:
        return len(self.links)

    def close(self) -> None:
        if self.thread.is_alive():
            try:
                self._call(self._close(), timeout=10)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=10)
                if not self.thread.is_alive():
                    self.loop.close()

    def _call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- the loop --

    async def _start(self) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _set_flowing(self, on: bool) -> None:
        assert self.flowing is not None
        if on:
            self.flowing.set()
        else:
            self.flowing.clear()

    async def _cut(self) -> int:
        links = list(self.links)
        for client, server in links:
            client.transport.abort()
            if server is not None:
                server.transport.abort()
        return len(links)

    async def _isolate(self, reset_on_send: bool) -> int:
        for link in list(self.links):
            self.isolated.add(link[0])
            if reset_on_send:
                self.reset_on_send.add(link[0])
        return len(self.isolated)

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()
        # Wake every held pump so that it meets its closed transport and ends.
        self.isolated.clear()
        self.reset_on_send.clear()
        self.never.set()
        assert self.flowing is not None
        self.flowing.set()
        await self._cut()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=5)

    async def _may_flow(self, client: asyncio.StreamWriter) -> None:
        """Returns when this connection's bytes may pass: never for an isolated one, after the
        stall for the others (isolation may come while waiting out a stall: check again)."""
        assert self.flowing is not None
        while True:
            if client in self.isolated:
                await self.never.wait()
            elif not self.flowing.is_set():
                await self.flowing.wait()
            else:
                return

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        assert self.flowing is not None
        self.accepted += 1
        link: list = [c_writer, None]
        key = (c_writer, None)
        self.links.add(key)
        try:
            await self.flowing.wait()  # stalled: the connection is held, not refused
            try:
                s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                c_writer.transport.abort()
                return
            self.links.discard(key)
            key = (c_writer, s_writer)
            link[1] = s_writer
            self.links.add(key)
            await asyncio.gather(
                self._pump(c_reader, s_writer, link, c_writer, c_reader),
                self._pump(s_reader, c_writer, link, c_writer, c_reader),
                return_exceptions=True,
            )
        finally:
            self.links.discard(key)
            for w in link:
                if w is not None:
                    w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: list,
                    client: asyncio.StreamWriter, client_reader: asyncio.StreamReader) -> None:
        assert self.flowing is not None
        try:
            while True:
                if reader is not client_reader or client not in self.reset_on_send:
                    await self._may_flow(client)
                data = await reader.read(65536)
                if not data:
                    break
                if reader is client_reader and client in self.reset_on_send:
                    break  # the client spoke on a connection the new host does not know: RST
                await self._may_flow(client)  # read during a stall: held until the path is back
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # One side ended: end both, as a connection through a real network path would.
            for w in link:
                if w is not None:
                    w.transport.abort()
