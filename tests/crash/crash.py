#!/usr/bin/env python3
"""Crash safety of Stockroom against the real binary (issue 6, item 1).

Runs `stockroom serve` on a database (SQLite by default, or a fresh schema on a PostgreSQL
server), drives a mixed load at it from worker threads (stock transactions, carts, checkouts,
payments through a built-in HTTP gateway that approves, declines, errs or hangs, captures, ships,
cancels), and SIGKILLs the server at random moments, restarting it on the same database each
time. Every state-changing request carries a unique Idempotency-Key; the client logs every
attempt (in memory and as JSONL) with the answer it was given, or "unknown" when the connection
died, and re-sends an unknown request with the same key until it gets a definitive answer, as a
careful client would.

After every restart, with the load paused, it checks:

 1. every request acknowledged (2xx) is in the database, with the figures it was answered with;
 2. nothing is applied twice: a sample of acknowledged requests and every request whose outcome
    was unknown are re-sent with their key and must give the first answer (same ids) and change
    no stock figure; and the store matches exact accounting from the log: per product, the number
    of history entries and the total/allocated figures; per order, its state, its payment
    attempts and captures; per cart, its quantities; the number of orders;
 3. payment attempts left pending by a kill are released after their timeout (bounded wait), so
    that no stock stays allocated to an unpaid order: per product, allocated equals the
    quantities of the orders that are paid or authorized and neither shipped nor cancelled;
 4. `stockroom verify` exits 0.

It prints a summary and a final `N passed, N failed` line, and exits non-zero on any failure.
Standard library only (Python 3.11).

    tests/crash/crash.py                                   # SQLite in a temporary folder
    tests/crash/crash.py --database-url postgres://postgres@127.0.0.1:5432/test --kills 20
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

INITIAL_STOCK = 1000
ORDER_PRODUCTS = {"p1": 100, "p2": 250, "p3": 999, "p4": 1500}  # id -> price (USD cents)
STOCK_PRODUCTS = ["s1", "s2", "s3"]  # only raw stock transactions touch these
ALL_PRODUCTS = list(ORDER_PRODUCTS) + STOCK_PRODUCTS

PAYMENT_PENDING_TIMEOUT_MS = 3000
PAYMENT_GATEWAY_TIMEOUT_MS = 2000
# The server sweeps overdue attempts every pending_timeout/4 (clamped to 100 ms..5 s).
SWEEP_EVERY_S = min(max(PAYMENT_PENDING_TIMEOUT_MS / 4000, 0.1), 5.0)
# A pending attempt must be released within its timeout plus a sweep interval; allow for a
# restart and a slow machine on top.
RELEASE_SLACK_S = 5.0

REQUEST_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 90.0
QUIESCE_TIMEOUT_S = 120.0


class Abort(Exception):
    """The run cannot go on (the server would not restart, say)."""


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def error_title(body: Any) -> str | None:
    try:
        return body["errors"][0]["title"]
    except (KeyError, IndexError, TypeError):
        return None


# ---- results --------------------------------------------------------------------------------


class Results:
    """Named checks, each passed or failed, with the first few failure details."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.passed = 0
        self.failed = 0
        self.failures: list[str] = []

    def check(self, name: str, problems: list[str], ok_detail: str = "") -> bool:
        with self.lock:
            if problems:
                self.failed += 1
                shown = problems[:15]
                more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
                text = f"FAIL {name}: {len(problems)} problem(s){more}\n" + "\n".join(
                    f"       - {p}" for p in shown
                )
                self.failures.append(text)
                print("  " + text, flush=True)
                return False
            self.passed += 1
            if ok_detail:
                print(f"  ok   {name}: {ok_detail}", flush=True)
            return True


# ---- the request log ------------------------------------------------------------------------


@dataclass
class Req:
    seq: int
    kind: str  # product, stock, txn, restock, add, checkout, pay, capture, ship, cancel
    method: str
    path: str
    body: bytes
    key: str
    meta: dict
    worker: int
    cycle: int
    attempts: int = 0
    unknown: int = 0  # attempts whose outcome was unknown (the connection died)
    unknown_gens: list = field(default_factory=list)  # server generations it was in flight on
    server_errors: int = 0
    status: int | None = None  # the definitive answer's status
    resp: Any = None  # and body
    acked_cycle: int | None = None
    acked_at: float | None = None
    resolution: str | None = None  # for requests with an unknown attempt: how it resolved

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Log:
    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.file = open(path, "w", encoding="utf-8")
        self.reqs: list[Req] = []
        self.acked: list[Req] = []  # requests in the order they got a definitive answer
        self.seq = 0
        self.counts: collections.Counter = collections.Counter()

    def new(self, run: str, kind, method, path, body, meta, worker, cycle) -> Req:
        with self.lock:
            self.seq += 1
            r = Req(self.seq, kind, method, path, body, f"{run}-{self.seq}", meta, worker, cycle)
            self.reqs.append(r)
            return r

    def attempt(self, req: Req, gen: int, outcome: Any, response: Any = None, note: str = "") -> None:
        rec = {
            "at": now_iso(),
            "seq": req.seq,
            "key": req.key,
            "kind": req.kind,
            "method": req.method,
            "path": req.path,
            "body": req.body.decode(),
            "attempt": req.attempts,
            "server": gen,
            "outcome": outcome,
        }
        if response is not None:
            rec["response"] = response
        if note:
            rec["note"] = note
        line = json.dumps(rec)
        with self.lock:
            self.file.write(line + "\n")

    def final(self, req: Req) -> None:
        with self.lock:
            self.acked.append(req)

    def close(self) -> None:
        with self.lock:
            self.file.close()


# ---- the payment gateway --------------------------------------------------------------------


class Gateway:
    """A tiny HTTP payment gateway: approves most payments, declines some, errs on some, and
    hangs (longer than the server's gateway timeout) on some, so that payments are pending
    when the server is killed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    pass
                with gateway.lock:
                    r = gateway.rng.random()
                    latency = gateway.rng.uniform(0.0, 0.03)
                # Hangs are rare: each one holds a worker for longer than the gateway timeout,
                # and kills should find all kinds of requests in flight, not only payments.
                if r < 0.80:
                    decision, status, delay = "approve", 200, latency
                elif r < 0.91:
                    decision, status, delay = "decline", 200, latency
                elif r < 0.96:
                    decision, status, delay = "error", 502, latency
                else:
                    decision, status, delay = "hang", 200, PAYMENT_GATEWAY_TIMEOUT_MS / 1000 * 1.3
                with gateway.lock:
                    gateway.counts[decision] += 1
                if delay:
                    time.sleep(delay)
                payload = compact({"decision": "approve" if decision in ("approve", "hang") else "decline"})
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the server gave up (timeout) or was killed

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the stockroom server was killed mid-request: expected

        self.server = Quiet(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pay"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


# ---- the server process ---------------------------------------------------------------------


class Server:
    def __init__(self, args, workdir: str, gateway: Gateway) -> None:
        self.bin = args.bin
        self.url = args.database_url
        self.proc: subprocess.Popen | None = None
        self.gen = 0
        self.port = 0
        self.alive = threading.Event()
        self.log_path = os.path.join(workdir, "server.log")
        self.log = open(self.log_path, "ab")
        self.client_id = "crash-admin"
        self.client_secret = "crash-secret-" + "%016x" % random.getrandbits(64)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("STOCKROOM_"):
                del self.env[k]
        self.env.update(
            STOCKROOM_CLIENT_ID=self.client_id,
            STOCKROOM_CLIENT_SECRET=self.client_secret,
            STOCKROOM_PAYMENT_GATEWAY_URL=gateway.url,
            STOCKROOM_PAYMENT_GATEWAY_TIMEOUT_MS=str(PAYMENT_GATEWAY_TIMEOUT_MS),
            STOCKROOM_PAYMENT_PENDING_TIMEOUT_MS=str(PAYMENT_PENDING_TIMEOUT_MS),
            STOCKROOM_LOG=os.environ.get("STOCKROOM_LOG", "info"),
        )
        self.starts = 0

    def start(self) -> float:
        t0 = time.monotonic()
        self.log.write(f"\n===== start {self.starts + 1} at {now_iso()} =====\n".encode())
        self.log.flush()
        proc = subprocess.Popen(
            [self.bin, "serve", "--listen", "127.0.0.1:0", "--database-url", self.url],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        port = None
        lines: list[str] = []
        result: dict = {}

        def read_until_listening():
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if line.startswith("stockroom listening on http://"):
                    result["addr"] = line.split("http://", 1)[1].strip()
                    break
            # Keep draining so the server never blocks on a full pipe.
            for raw in proc.stdout:
                self.log.write(b"[stdout] " + raw)

        reader = threading.Thread(target=read_until_listening, daemon=True)
        reader.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline and "addr" not in result and proc.poll() is None:
            time.sleep(0.01)
        if "addr" not in result:
            proc.kill()
            proc.wait()
            raise Abort(
                f"stockroom serve did not start (exit {proc.returncode}); stdout: {lines[-5:]}; "
                f"see {self.log_path}"
            )
        port = int(result["addr"].rsplit(":", 1)[1])
        self.proc = proc
        self.port = port
        self.gen += 1
        self.starts += 1
        self.alive.set()
        return time.monotonic() - t0

    def kill(self) -> None:
        assert self.proc is not None
        self.alive.clear()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.write(f"===== SIGKILL at {now_iso()} =====\n".encode())
        self.log.flush()

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.alive.clear()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


# ---- HTTP -----------------------------------------------------------------------------------


class Conn:
    """One keep-alive connection to the current server generation."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.conn: http.client.HTTPConnection | None = None
        self.gen = -1

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict):
        """(status, headers, raw body). Raises ConnectionRefusedError when nothing was sent,
        another OSError/HTTPException when the outcome is unknown."""
        gen, port = self.server.gen, self.server.port
        if self.conn is None or self.gen != gen:
            self.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
            c.connect()  # ConnectionRefusedError here: nothing was sent
            self.conn, self.gen = c, gen
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return resp.status, resp, data
        except BaseException:
            self.close()
            raise


def decode(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"_raw": data[:500].decode(errors="replace")}


class Api:
    """Reads and setup calls from the checking thread(s): retries connection errors while the
    server is (re)starting. One connection per thread."""

    def __init__(self, server: Server, token_box: "TokenBox") -> None:
        self.server = server
        self.tokens = token_box
        self.local = threading.local()

    def _conn(self) -> Conn:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = Conn(self.server)
        return c

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        deadline = time.monotonic() + 60
        while True:
            self.server.alive.wait(timeout=60)
            h = {"Authorization": "Bearer " + self.tokens.get(self.server)}
            if body is not None:
                h["Content-Type"] = "application/json"
            h.update(headers or {})
            try:
                status, resp, data = self._conn().request(method, path, body, h)
            except (OSError, http.client.HTTPException) as e:
                if time.monotonic() > deadline:
                    raise Abort(f"{method} {path}: {e!r}")
                time.sleep(0.05)
                continue
            if status == 401:
                self.tokens.refresh(self.server)
                continue
            if status == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            return status, decode(data)

    def get(self, path: str):
        return self.call("GET", path)


class TokenBox:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: str | None = None

    def get(self, server: Server) -> str:
        with self.lock:
            if self.token is None:
                self.token = self._fetch(server)
            return self.token

    def refresh(self, server: Server) -> None:
        with self.lock:
            self.token = self._fetch(server)

    @staticmethod
    def _fetch(server: Server) -> str:
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": server.client_id,
                "client_secret": server.client_secret,
            }
        ).encode()
        deadline = time.monotonic() + 60
        while True:
            server.alive.wait(timeout=60)
            c = Conn(server)
            try:
                status, _, data = c.request(
                    "POST",
                    "/oauth/access_token",
                    form,
                    {"Content-Type": "application/x-www-form-urlencoded"},
                )
                if status == 200:
                    return json.loads(data)["access_token"]
                raise Abort(f"token request answered {status}: {data[:200]!r}")
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise Abort("cannot get a token")
                time.sleep(0.05)
            finally:
                c.close()


# ---- the shared state of a run --------------------------------------------------------------


class Gate:
    """Workers pass it before each operation; the main thread closes it and waits until no
    operation is in flight (every unknown outcome re-sent and resolved)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.is_open = False
        self.stopping = False
        self.busy = 0

    def enter(self) -> bool:
        with self.cond:
            while not self.is_open and not self.stopping:
                self.cond.wait()
            if self.stopping:
                return False
            self.busy += 1
            return True

    def leave(self) -> None:
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def open(self) -> None:
        with self.cond:
            self.is_open = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.is_open = False

    def drain(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.busy == 0, timeout=timeout)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()


@dataclass
class OrderModel:
    id: str
    cart: str
    worker: int
    created_cycle: int
    items: dict | None = None  # product -> quantity, as the server holds them


class Run:
    def __init__(self, args, workdir: str) -> None:
        self.args = args
        self.id = "%08x" % random.Random(args.seed).getrandbits(32)
        self.workdir = workdir
        self.log = Log(os.path.join(workdir, "requests.jsonl"))
        self.gateway = Gateway(args.seed + 1)
        self.server = Server(args, workdir, self.gateway)
        self.tokens = TokenBox()
        self.api = Api(self.server, self.tokens)
        self.gate = Gate()
        self.results = Results()
        self.cycle = 0
        self.abort = False
        self.lock = threading.Lock()
        self.orders: dict[str, OrderModel] = {}
        self.pay_status: dict[int, str] = {}  # pay request seq -> status as resolved later
        self.pending_seen: dict[int, float] = {}  # pay seq -> when first seen pending
        self.release_waits: list[float] = []
        self.kill_times: dict[int, float] = {}  # server generation -> time it was killed
        self.last_killed_gen = 0
        self.restart_times: list[float] = []
        self.in_flight_at_kill: list[int] = []
        self.replays = 0
        self.replays_failed = 0
        self.acked_checked = 0
        self.checked_upto = 0
        self.verify_runs = 0
        self.unexpected_errors: list[str] = []
        self.server_errors: list[str] = []
        self.count503 = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)

    def note_5xx(self, req: Req, status: int, body: Any) -> None:
        with self.lock:
            self.server_errors.append(
                f"{req.method} {req.path} (key {req.key}) answered {status}: {json.dumps(body)[:300]}"
            )


# ---- load -----------------------------------------------------------------------------------


class Worker(threading.Thread):
    def __init__(self, run: Run, wid: int) -> None:
        super().__init__(name=f"worker-{wid}", daemon=True)
        self.run_ = run
        self.wid = wid
        self.rng = random.Random(run.args.seed * 1000 + wid)
        self.conn = Conn(run.server)
        self.order: dict | None = None
        self.carts = 0
        self.crashed: str | None = None

    # -- sending with retries under the same key --

    def send(self, kind: str, method: str, path: str, obj: Any, meta: dict) -> Req:
        run = self.run_
        body = compact(obj)
        req = run.log.new(run.id, kind, method, path, body, meta, self.wid, run.cycle)
        while True:
            if run.abort:
                raise Abort("aborted")
            if not run.server.alive.wait(timeout=120):
                raise Abort("the server did not come back")
            gen = run.server.gen
            headers = {
                "Authorization": "Bearer " + run.tokens.get(run.server),
                "Content-Type": "application/json",
                "Idempotency-Key": req.key,
            }
            req.attempts += 1
            try:
                status, resp, data = self.conn.request(method, path, body, headers)
            except ConnectionRefusedError:
                run.log.attempt(req, gen, "not-sent", note="connection refused")
                time.sleep(0.05)
                continue
            except (OSError, http.client.HTTPException) as e:
                req.unknown += 1
                req.unknown_gens.append(gen)
                killed = not run.server.alive.is_set() or run.server.gen != gen
                run.log.attempt(req, gen, "unknown", note=repr(e) if not killed else "server killed")
                if not killed:
                    with run.lock:
                        run.unexpected_errors.append(f"{method} {path}: {e!r} with the server up")
                time.sleep(0.05)
                continue
            parsed = decode(data)
            if status == 401:
                run.log.attempt(req, gen, status, parsed, note="token refused; fetching another")
                run.tokens.refresh(run.server)
                continue
            if status == 503:
                with run.lock:
                    run.count503 += 1
                run.log.attempt(req, gen, status, parsed, note="retrying after Retry-After")
                try:
                    wait = float(resp.getheader("Retry-After") or 1)
                except ValueError:
                    wait = 1.0
                time.sleep(min(wait, 1.0) * 0.5)
                continue
            if status >= 500:
                req.server_errors += 1
                run.note_5xx(req, status, parsed)
                run.log.attempt(req, gen, status, parsed, note="server error; retrying with the same key")
                if req.server_errors >= 5:
                    req.status, req.resp = status, parsed
                    req.acked_cycle, req.acked_at = run.cycle, time.time()
                    run.log.final(req)
                    return req
                time.sleep(0.2)
                continue
            req.status, req.resp = status, parsed
            req.acked_cycle, req.acked_at = run.cycle, time.time()
            run.log.attempt(req, gen, status, parsed)
            run.log.final(req)
            if req.unknown:
                req.resolution = classify_resolution(run, req)
            return req

    def get(self, path: str) -> tuple[int, Any]:
        run = self.run_
        while True:
            if run.abort:
                raise Abort("aborted")
            run.server.alive.wait(timeout=120)
            headers = {"Authorization": "Bearer " + run.tokens.get(run.server)}
            try:
                status, _, data = self.conn.request("GET", path, None, headers)
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
                continue
            if status == 401:
                run.tokens.refresh(run.server)
                continue
            if status == 503:
                time.sleep(0.2)
                continue
            return status, decode(data)

    # -- the load --

    def run(self) -> None:
        run = self.run_
        while True:
            if not run.gate.enter():
                return
            try:
                self.step()
            except Abort:
                run.abort = True
                return
            except Exception:  # noqa: BLE001 - a bug in this script: report it, stop the worker
                self.crashed = traceback.format_exc()
                run.abort = True
                return
            finally:
                run.gate.leave()

    def step(self) -> None:
        r = self.rng.random()
        if r < 0.33:
            self.stock_transaction()
        elif r < 0.38:
            self.restock()
        else:
            self.order_step()

    def stock_transaction(self) -> None:
        pid = self.rng.choice(STOCK_PRODUCTS)
        action = self.rng.choices(
            ["increment", "allocate", "deallocate", "decrement"], weights=[30, 30, 20, 20]
        )[0]
        qty = self.rng.randint(1, 20)
        self.send(
            "txn",
            "POST",
            f"/v2/inventories/{pid}/transactions",
            {"data": {"type": "stock-transaction", "action": action, "quantity": qty}},
            {"pid": pid, "action": action, "qty": qty},
        )

    def restock(self) -> None:
        pid = self.rng.choice(list(ORDER_PRODUCTS))
        qty = self.rng.randint(10, 60)
        self.send(
            "restock",
            "POST",
            f"/v2/inventories/{pid}/transactions",
            {"data": {"type": "stock-transaction", "action": "increment", "quantity": qty, "reason": "restock"}},
            {"pid": pid, "action": "increment", "qty": qty},
        )

    def order_step(self) -> None:
        run = self.run_
        rng = self.rng
        o = self.order
        if o is None:
            self.carts += 1
            o = self.order = {
                "cart": f"{run.id}-w{self.wid}-c{self.carts}",
                "phase": "cart",
                "adds": rng.randint(1, 3),
                "pay_failures": 0,
            }
        phase = o["phase"]
        oid = o.get("id")
        if phase == "cart":
            n = rng.randint(1, 2)
            lines = [(rng.choice(list(ORDER_PRODUCTS)), rng.randint(1, 4)) for _ in range(n)]
            items = [{"type": "cart_item", "id": p, "quantity": q} for p, q in lines]
            data: Any = items[0] if (n == 1 and rng.random() < 0.7) else items
            self.send("add", "POST", f"/v2/carts/{o['cart']}/items", {"data": data},
                      {"cart": o["cart"], "lines": lines})
            o["adds"] -= 1
            if o["adds"] <= 0:
                o["phase"] = "checkout"
        elif phase == "checkout":
            req = self.send(
                "checkout",
                "POST",
                f"/v2/carts/{o['cart']}/checkout",
                {"data": {"customer": {"email": "a@b.c", "name": f"w{self.wid}"},
                          "billing_address": {"line_1": "x", "country": "GB"}}},
                {"cart": o["cart"]},
            )
            if req.status == 201:
                oid = req.resp["data"]["id"]
                model = OrderModel(oid, o["cart"], self.wid, run.cycle)
                with run.lock:
                    run.orders[oid] = model
                status, body = self.get(f"/v2/orders/{oid}?include=items")
                if status != 200:
                    with run.lock:
                        run.unexpected_errors.append(f"GET order {oid} after checkout answered {status}")
                else:
                    items: dict = collections.Counter()
                    for it in body.get("included", {}).get("items", []):
                        items[it["product_id"]] += it["quantity"]
                    model.items = dict(items)
                o["id"] = oid
                o["phase"] = "pay"
            else:
                self.order = None
        elif phase == "pay":
            if rng.random() < 0.03:  # a refusal: shipping an unpaid order
                self.send("ship", "PUT", f"/v2/orders/{oid}",
                          {"data": {"type": "order", "shipping": "fulfilled"}}, {"order": oid})
                return
            gateway = "http" if rng.random() < 0.5 else "manual"
            method = "authorize" if rng.random() < 0.15 else "purchase"
            req = self.send("pay", "POST", f"/v2/orders/{oid}/payments",
                            {"data": {"gateway": gateway, "method": method}},
                            {"order": oid, "gateway": gateway, "method": method})
            if req.status == 200:
                if req.resp["data"]["status"] == "complete":
                    o["phase"] = "authorized" if method == "authorize" else "paid"
                    o["auth"] = req.resp["data"]["id"]
                else:
                    self.order = None  # pending after a kill: left for the release sweep
            elif req.status == 400 and error_title(req.resp) == "Payment failed":
                o["pay_failures"] += 1
                if o["pay_failures"] >= 3 or rng.random() < 0.25:
                    o["phase"] = "cancel"
            else:
                o["phase"] = "cancel" if rng.random() < 0.5 else "done"
        elif phase == "authorized":
            if rng.random() < 0.7:
                req = self.send("capture", "POST", f"/v2/orders/{oid}/transactions/{o['auth']}/capture",
                                {}, {"order": oid, "authorization": o["auth"]})
                o["phase"] = "paid" if req.status == 200 else "done"
            else:
                o["phase"] = "cancel"
        elif phase == "paid":
            r = rng.random()
            if r < 0.75:
                self.send("ship", "PUT", f"/v2/orders/{oid}",
                          {"data": {"type": "order", "shipping": "fulfilled"}}, {"order": oid})
                o["phase"] = "shipped"
            elif r < 0.95:
                o["phase"] = "cancel"
            else:
                o["phase"] = "done"
        elif phase == "shipped":
            if rng.random() < 0.1:  # a refusal: cancelling a shipped order
                self.send("cancel", "PUT", f"/v2/orders/{oid}",
                          {"data": {"type": "order", "status": "cancelled"}}, {"order": oid})
            o["phase"] = "done"
        elif phase == "cancel":
            self.send("cancel", "PUT", f"/v2/orders/{oid}",
                      {"data": {"type": "order", "status": "cancelled"}}, {"order": oid})
            o["phase"] = "done"
        if o["phase"] == "done":
            self.order = None


def answer_time(req: Req) -> float | None:
    """When the server says the thing this answer is about was made or last changed."""
    d = req.resp.get("data") if isinstance(req.resp, dict) else None
    if req.kind in ("txn", "restock") and isinstance(d, dict):
        return parse_time(d.get("timestamps", {}).get("created_at"))
    if req.kind in ("checkout", "pay", "capture") and isinstance(d, dict):
        return parse_time(d.get("meta", {}).get("timestamps", {}).get("created_at"))
    if req.kind in ("ship", "cancel") and isinstance(d, dict):
        return parse_time(d.get("meta", {}).get("timestamps", {}).get("updated_at"))
    if req.kind == "add" and isinstance(req.resp, dict):
        return parse_time(req.resp.get("meta", {}).get("timestamps", {}).get("updated_at"))
    return None


def classify_resolution(run: Run, req: Req) -> str:
    """For a request whose first outcome was unknown: did it commit before the kill (the re-send
    replayed it), apply on the re-send, or was it refused?"""
    if not req.ok:
        return f"answered {req.status} {error_title(req.resp)}"
    t = answer_time(req)
    kill = run.kill_times.get(req.unknown_gens[0])
    if t is None or kill is None:
        return "undetermined"
    if t <= kill:
        return "committed before the kill (replayed)"
    return "applied on the re-send"


# ---- the model: what the log says the database must hold ------------------------------------


def pay_status(run: Run, req: Req) -> str | None:
    """complete / pending / failed for an applied payment attempt; None if not applied."""
    if req.ok:
        return run.pay_status.get(req.seq, req.resp["data"]["status"])
    if req.status == 400 and error_title(req.resp) == "Payment failed":
        return "failed"
    return None


class Model:
    def __init__(self, run: Run) -> None:
        self.entries: collections.Counter = collections.Counter({p: 1 for p in ALL_PRODUCTS})
        self.total = {p: INITIAL_STOCK for p in ALL_PRODUCTS}
        self.allocated = {p: 0 for p in ALL_PRODUCTS}
        self.carts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.by_order: dict[str, list[Req]] = collections.defaultdict(list)
        self.orders: dict[str, dict] = {}
        self.problems: list[str] = []
        self.checkouts = 0
        with run.lock:
            orders = dict(run.orders)
        with run.log.lock:
            reqs = list(run.log.reqs)
        for r in reqs:
            if r.status is None:
                continue
            if r.kind in ("txn", "restock") and r.ok:
                p, a, q = r.meta["pid"], r.meta["action"], r.meta["qty"]
                self.entries[p] += 1
                if a == "increment":
                    self.total[p] += q
                elif a == "decrement":
                    self.total[p] -= q
                elif a == "allocate":
                    self.allocated[p] += q
                elif a == "deallocate":
                    self.allocated[p] -= q
            elif r.kind == "add" and r.ok:
                for p, q in r.meta["lines"]:
                    self.carts[r.meta["cart"]][p] += q
            elif r.kind == "checkout" and r.status == 201:
                self.checkouts += 1
            elif "order" in r.meta:
                self.by_order[r.meta["order"]].append(r)
        for oid, om in orders.items():
            self.orders[oid] = self.order_model(run, om)

    def order_model(self, run: Run, om: OrderModel) -> dict:
        reqs = sorted(self.by_order.get(om.id, []), key=lambda r: r.seq)
        items = om.items or {}
        attempts = []  # (seq, payment id or None, method, status)
        captures = []
        shipped = cancelled = released = False
        for r in reqs:
            if r.kind == "pay":
                st = pay_status(run, r)
                if st is not None:
                    pid = r.resp["data"]["id"] if r.ok else None
                    attempts.append((r.seq, pid, r.meta["method"], st))
            elif r.kind == "capture" and r.ok:
                captures.append(r.resp["data"]["id"])
            elif r.kind == "ship" and r.ok:
                shipped = True
            elif r.kind == "cancel" and r.ok:
                cancelled = True
                released = r.resp["data"]["payment"] in ("paid", "authorized")
        complete = [a for a in attempts if a[3] == "complete"]
        pending = [a for a in attempts if a[3] == "pending"]
        failed = [a for a in attempts if a[3] == "failed"]
        if len(complete) > 1:
            self.problems.append(f"order {om.id}: {len(complete)} approved payment attempts")
        if complete:
            payment = "paid" if (complete[0][2] == "purchase" or captures) else "authorized"
        else:
            payment = "unpaid"
        if cancelled and released != bool(complete):
            self.problems.append(
                f"order {om.id}: cancel answered payment={'paid/authorized' if released else 'unpaid'} "
                f"but the log has {len(complete)} approved attempt(s)"
            )
        status = "cancelled" if cancelled else ("complete" if payment == "paid" else "incomplete")
        per_product = len(attempts) + len(failed) + int(shipped) + int(cancelled and released)
        for p, q in items.items():
            self.entries[p] += per_product
            if shipped:
                self.total[p] -= q
            if (complete and not shipped and not (cancelled and released)) or pending:
                self.allocated[p] += q
        return {
            "status": status,
            "payment": payment,
            "shipping": "fulfilled" if shipped else "unfulfilled",
            "attempts": attempts,
            "captures": captures,
            "items": items,
            "cart": om.cart,
        }


# ---- the checks -----------------------------------------------------------------------------


def check_acknowledged(run: Run, req: Req) -> str | None:
    """Check 1 for one acknowledged request: what it was answered with is in the database."""
    api = run.api
    d = req.resp.get("data") if isinstance(req.resp, dict) else None
    what = f"{req.method} {req.path} (key {req.key}, acknowledged {req.status})"
    if req.kind in ("txn", "restock", "stock"):
        if req.kind == "stock":
            status, body = api.get(f"/v2/inventories/{req.meta['pid']}/transactions?filter=eq(action,create)")
            if status != 200 or body["meta"]["results"]["total"] != 1:
                return f"{what}: create entry missing ({status})"
            return None
        status, body = api.get(f"/v2/inventories/{req.meta['pid']}/transactions/{d['id']}")
        if status != 200:
            return f"{what}: history entry {d['id']} answered {status}"
        got = body["data"]
        for k in ("id", "action", "quantity", "total", "allocated", "available", "product_id"):
            if got.get(k) != d.get(k):
                return f"{what}: entry {d['id']} has {k}={got.get(k)!r}, acknowledged {d.get(k)!r}"
        return None
    if req.kind == "product":
        status, _ = api.get(f"/v2/products/{req.meta['pid']}")
        return None if status == 200 else f"{what}: product answered {status}"
    if req.kind == "add":
        status, body = api.get(f"/v2/carts/{req.meta['cart']}/items")
        if status != 200:
            return f"{what}: cart answered {status}"
        have = collections.Counter()
        for it in body["data"]:
            have[it["product_id"]] += it["quantity"]
        for it in req.resp["data"]:
            if have[it["product_id"]] < it["quantity"]:
                return (f"{what}: cart holds {have[it['product_id']]} of {it['product_id']}, "
                        f"acknowledged {it['quantity']}")
        return None
    if req.kind == "checkout":
        status, body = api.get(f"/v2/orders/{d['id']}")
        return None if status == 200 else f"{what}: order {d['id']} answered {status}"
    if req.kind in ("pay", "capture"):
        oid = req.meta["order"]
        status, body = api.get(f"/v2/orders/{oid}/transactions/{d['id']}")
        if status != 200:
            return f"{what}: payment transaction {d['id']} answered {status}"
        got, acked = body["data"]["status"], d["status"]
        allowed = {"complete": {"complete"}, "pending": {"pending", "failed"}}.get(acked, {acked})
        if got not in allowed:
            return f"{what}: transaction {d['id']} is {got}, acknowledged {acked}"
        return None
    if req.kind in ("ship", "cancel"):
        status, body = api.get(f"/v2/orders/{d['id']}")
        if status != 200:
            return f"{what}: order answered {status}"
        got = body["data"]
        if req.kind == "ship" and got["shipping"] != "fulfilled":
            return f"{what}: order shipping is {got['shipping']}"
        if req.kind == "cancel" and got["status"] != "cancelled":
            return f"{what}: order status is {got['status']}"
        return None
    return None


def stock_snapshot(run: Run) -> dict:
    status, body = run.api.get("/v2/inventories?page[limit]=100")
    if status != 200:
        raise Abort(f"GET /v2/inventories answered {status}")
    snap = {s["id"]: (s["total"], s["allocated"], s["available"]) for s in body["data"]}
    for p in ALL_PRODUCTS:
        status, body = run.api.get(f"/v2/inventories/{p}/transactions?page[limit]=1")
        if status != 200:
            raise Abort(f"history of {p} answered {status}")
        snap[p] = snap.get(p, ()) + (body["meta"]["results"]["total"],)
    return snap


def resolve_pending(run: Run, label: str) -> None:
    """Check 3 (per cycle): every payment attempt left pending is released after its timeout."""
    with run.log.lock:
        reqs = [r for r in run.log.reqs if r.kind == "pay" and r.ok]
    pending = [r for r in reqs if pay_status(run, r) == "pending"]
    problems = []
    if not pending:
        run.results.check(f"{label}: pending payments released", [], "none pending")
        return
    started = time.monotonic()
    bound = PAYMENT_PENDING_TIMEOUT_MS / 1000 + SWEEP_EVERY_S + RELEASE_SLACK_S
    waiting = {r.seq: r for r in pending}
    worst = 0.0
    while waiting and time.monotonic() - started < bound + 10:
        for seq, r in list(waiting.items()):
            oid, tid = r.meta["order"], r.resp["data"]["id"]
            status, body = run.api.get(f"/v2/orders/{oid}/transactions/{tid}")
            if status != 200:
                problems.append(f"pending payment {tid} of order {oid} answered {status}")
                del waiting[seq]
                continue
            st = body["data"]["status"]
            if st == "pending":
                continue
            created = parse_time(body["data"]["meta"]["timestamps"]["created_at"]) or time.time()
            released_at = parse_time(body["data"]["meta"]["timestamps"]["updated_at"]) or time.time()
            age = released_at - created
            worst = max(worst, age)
            run.release_waits.append(age)
            if st != "failed":
                problems.append(f"payment {tid} of order {oid} left pending by a kill became {st}")
            elif age > bound:
                problems.append(f"payment {tid} of order {oid} released {age:.1f}s after it began (bound {bound:.1f}s)")
            run.pay_status[seq] = st
            del waiting[seq]
        if waiting:
            time.sleep(0.2)
    for seq, r in waiting.items():
        problems.append(
            f"payment {r.resp['data']['id']} of order {r.meta['order']} still pending "
            f"{time.monotonic() - started:.1f}s after the restart"
        )
    run.results.check(
        f"{label}: pending payments released", problems,
        f"{len(pending)} released, each within {worst:.1f}s of its start (timeout {PAYMENT_PENDING_TIMEOUT_MS/1000:.1f}s)",
    )


def check_orders_against_server(run: Run, model: Model, oids: list[str]) -> list[str]:
    def one(oid: str) -> list[str]:
        m = model.orders[oid]
        out = []
        status, body = run.api.get(f"/v2/orders/{oid}?include=items")
        if status != 200:
            return [f"order {oid}: answered {status}"]
        o = body["data"]
        for k in ("status", "payment", "shipping"):
            if o[k] != m[k]:
                out.append(f"order {oid}: {k} is {o[k]}, the log says {m[k]}")
        items = collections.Counter()
        for it in body.get("included", {}).get("items", []):
            items[it["product_id"]] += it["quantity"]
        if dict(items) != m["items"]:
            out.append(f"order {oid}: items {dict(items)}, first read {m['items']}")
        cart = dict(model.carts.get(m["cart"], {}))
        if dict(items) != cart:
            out.append(f"order {oid}: items {dict(items)} but the acknowledged adds to cart {m['cart']} sum to {cart}")
        status, body = run.api.get(f"/v2/orders/{oid}/transactions")
        if status != 200:
            return out + [f"order {oid} transactions: answered {status}"]
        txs = body["data"]
        attempts = [t for t in txs if t["transaction_type"] in ("purchase", "authorize")]
        captures = [t for t in txs if t["transaction_type"] == "capture"]
        if len(attempts) != len(m["attempts"]):
            out.append(
                f"order {oid}: {len(attempts)} payment attempts stored "
                f"({[(t['id'], t['status']) for t in attempts]}), the log has {len(m['attempts'])} applied"
            )
        by_id = {t["id"]: t for t in attempts}
        for seq, tid, method, st in m["attempts"]:
            if tid is not None:
                t = by_id.get(tid)
                if t is None:
                    out.append(f"order {oid}: acknowledged payment {tid} missing")
                elif t["status"] != st or t["transaction_type"] != method:
                    out.append(f"order {oid}: payment {tid} is {t['transaction_type']}/{t['status']}, log {method}/{st}")
        for st in ("complete", "failed", "pending"):
            n_server = sum(1 for t in attempts if t["status"] == st)
            n_log = sum(1 for a in m["attempts"] if a[3] == st)
            if n_server != n_log:
                out.append(f"order {oid}: {n_server} {st} attempts stored, the log has {n_log}")
        if sorted(t["id"] for t in captures) != sorted(m["captures"]):
            out.append(f"order {oid}: captures {[t['id'] for t in captures]}, log {m['captures']}")
        return out

    problems: list[str] = []
    for out in run.pool.map(one, oids):
        problems.extend(out)
    return problems


def accounting(run: Run, label: str, oids: list[str] | None) -> Model:
    """Check 2 (exact accounting) and, with no payment pending, check 3's allocation rule."""
    model = Model(run)
    problems = list(model.problems)
    snap = stock_snapshot(run)
    for p in ALL_PRODUCTS:
        if p not in snap or len(snap[p]) != 4:
            problems.append(f"{p}: no stock record")
            continue
        total, allocated, available, entries = snap[p]
        if entries != model.entries[p]:
            problems.append(f"{p}: {entries} history entries, the log accounts for {model.entries[p]}")
        if total != model.total[p] or allocated != model.allocated[p]:
            problems.append(
                f"{p}: total/allocated {total}/{allocated}, the log says {model.total[p]}/{model.allocated[p]}"
            )
    status, body = run.api.get("/v2/orders?page[limit]=1")
    if status != 200:
        problems.append(f"GET /v2/orders answered {status}")
    elif body["meta"]["results"]["total"] != model.checkouts:
        problems.append(f"{body['meta']['results']['total']} orders stored, {model.checkouts} checkouts applied")
    if oids is None:
        oids = list(model.orders)
    problems += check_orders_against_server(run, model, oids)
    per = ", ".join(f"{p}={model.entries[p]}" for p in ALL_PRODUCTS)
    run.results.check(
        f"{label}: exact accounting (history entries, stock figures, orders, payments, carts)",
        problems,
        f"history entries {per}; {model.checkouts} orders; {len(oids)} orders compared",
    )
    return model


def allocation_rule(run: Run, label: str) -> None:
    """Check 3: per order product, allocated == quantities of paid/authorized orders that are
    neither shipped nor cancelled, read from the server's orders."""
    with run.lock:
        oids = list(run.orders)

    def one(oid):
        status, body = run.api.get(f"/v2/orders/{oid}?include=items")
        return oid, status, body

    held: collections.Counter = collections.Counter()
    problems = []
    for oid, status, body in run.pool.map(one, oids):
        if status != 200:
            problems.append(f"order {oid} answered {status}")
            continue
        o = body["data"]
        if o["payment"] in ("paid", "authorized") and o["shipping"] != "fulfilled" and o["status"] != "cancelled":
            for it in body.get("included", {}).get("items", []):
                held[it["product_id"]] += it["quantity"]
    snap = stock_snapshot(run)
    for p in ORDER_PRODUCTS:
        if snap[p][1] != held[p]:
            problems.append(f"{p}: allocated {snap[p][1]}, paid-or-authorized unshipped orders hold {held[p]}")
    run.results.check(
        f"{label}: allocations = paid/authorized unshipped orders", problems,
        ", ".join(f"{p} allocated {snap[p][1]}" for p in ORDER_PRODUCTS),
    )


def expected_replay(run: Run, req: Req) -> tuple[int, str | None]:
    """The answer a re-send must get: (status, error title)."""
    if req.kind == "pay" and req.ok and pay_status(run, req) == "failed":
        return 400, "Payment failed"
    return req.status, error_title(req.resp) if not req.ok else None


def replay_one(run: Run, req: Req, model: Model) -> str | None:
    what = f"re-send of {req.method} {req.path} (key {req.key}, first answer {req.status})"
    status, body = run.api.call(req.method, req.path, req.body, {"Idempotency-Key": req.key})
    want_status, want_title = expected_replay(run, req)
    if status != want_status:
        return f"{what}: answered {status} {json.dumps(body)[:200]}, expected {want_status}"
    if status >= 300:
        if error_title(body) != want_title:
            return f"{what}: title {error_title(body)!r}, expected {want_title!r}"
        return None
    d, first = body.get("data"), req.resp.get("data")
    if req.kind in ("txn", "restock"):
        for k in ("id", "action", "quantity", "total", "allocated", "available"):
            if d.get(k) != first.get(k):
                return f"{what}: {k}={d.get(k)!r}, first answer {first.get(k)!r}"
    elif req.kind == "add":
        have = collections.Counter()
        for it in d:
            have[it["product_id"]] += it["quantity"]
        want = model.carts.get(req.meta["cart"], {})
        if dict(have) != dict(want):
            return f"{what}: cart now {dict(have)}, the acknowledged adds sum to {dict(want)}"
    else:
        if d.get("id") != first.get("id"):
            return f"{what}: id {d.get('id')}, first answer {first.get('id')}"
        if req.kind == "pay" and d.get("status") != pay_status(run, req):
            return f"{what}: status {d.get('status')}, expected {pay_status(run, req)}"
    return None


def replays(run: Run, label: str, rng: random.Random, model: Model) -> None:
    """Check 2: re-sending acknowledged requests and resolved unknowns changes nothing."""
    with run.log.lock:
        done = [r for r in run.log.acked if r.kind not in ("product", "stock") and r.server_errors < 5]
    unknowns = [r for r in done if run.last_killed_gen in r.unknown_gens]
    sample = rng.sample(done, min(run.args.replays, len(done)))
    chosen = {r.seq: r for r in sample + unknowns[:100]}
    before = stock_snapshot(run)
    problems = [p for p in run.pool.map(lambda r: replay_one(run, r, model), list(chosen.values())) if p]
    after = stock_snapshot(run)
    if before != after:
        problems.append(f"stock or history changed by re-sends: before {before}, after {after}")
    run.replays += len(chosen)
    run.replays_failed += len(problems)
    run.results.check(
        f"{label}: re-sends with the same key give the first answer and change nothing",
        problems,
        f"{len(chosen)} re-sent ({len(set(chosen) & {r.seq for r in unknowns})} whose outcome had been unknown)",
    )


def run_verify(run: Run, label: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKROOM_")}
    try:
        out = subprocess.run(
            [run.args.bin, "verify", "--database-url", run.args.database_url],
            env=env, capture_output=True, text=True, timeout=600,
        )
    except subprocess.TimeoutExpired:
        run.results.check(f"{label}: stockroom verify", ["timed out after 600 s"])
        return
    run.verify_runs += 1
    last = (out.stdout.strip().splitlines() or [""])[-1]
    problems = []
    if out.returncode != 0:
        problems.append(f"exit {out.returncode}: {out.stdout.strip()[-2000:]} {out.stderr.strip()[-1000:]}")
    run.results.check(f"{label}: stockroom verify", problems, last)


def check_acked_batch(run: Run, label: str, reqs: list[Req]) -> None:
    todo = [r for r in reqs if r.ok and r.server_errors < 5]
    problems = [p for p in run.pool.map(lambda r: check_acknowledged(run, r), todo) if p]
    run.acked_checked += len(todo)
    run.results.check(
        f"{label}: every acknowledged request is in the database", problems,
        f"{len(todo)} acknowledged requests looked up and found with their figures",
    )


def cycle_checks(run: Run, label: str, rng: random.Random, final: bool = False) -> None:
    with run.log.lock:
        new = run.log.acked[run.checked_upto:]
        run.checked_upto = len(run.log.acked)
        everything = list(run.log.acked)
    resolve_pending(run, label)
    if final:
        check_acked_batch(run, label, everything)
    else:
        # The requests acknowledged since the last check, and a sample of older ones (a kill
        # must not lose what earlier restarts kept; the final check looks at every one again).
        older = everything[: len(everything) - len(new)]
        check_acked_batch(run, label, new + rng.sample(older, min(200, len(older))))
    touched = None
    if not final:
        touched = sorted({r.meta["order"] for r in new if "order" in r.meta}
                         | {r.resp["data"]["id"] for r in new if r.kind == "checkout" and r.status == 201})
        with run.lock:
            touched = [o for o in touched if o in run.orders]
    model = accounting(run, label, touched)
    if final:
        allocation_rule(run, label)
    replays(run, label, rng, model)
    run_verify(run, label)


# ---- the run --------------------------------------------------------------------------------


def setup(run: Run) -> None:
    w = Worker(run, 0)
    for pid, price in ORDER_PRODUCTS.items():
        req = w.send("product", "POST", "/v2/products",
                     {"data": {"type": "product", "id": pid,
                               "attributes": {"name": pid.upper(), "sku": pid.upper(),
                                              "price": {"amount": price, "currency": "USD"}}}},
                     {"pid": pid})
        if req.status != 201:
            raise Abort(f"creating product {pid} answered {req.status}: {req.resp}")
    for pid in ALL_PRODUCTS:
        req = w.send("stock", "POST", f"/v2/inventories/{pid}", {"data": {"quantity": INITIAL_STOCK}}, {"pid": pid})
        if req.status != 201:
            raise Abort(f"creating stock {pid} answered {req.status}: {req.resp}")


def fresh_postgres_schema(url: str) -> tuple[str, str]:
    if not shutil.which("psql"):
        raise Abort("psql is needed to create a fresh PostgreSQL schema")
    schema = "stockroom_crash_%012x" % random.getrandbits(48)
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE SCHEMA {schema}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Abort(f"psql could not create schema {schema}: {out.stderr.strip()}")
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options=-c%20search_path%3D{schema}"


def drop_postgres_schema(url: str, schema: str) -> None:
    subprocess.run(["psql", url, "-qc", f"DROP SCHEMA {schema} CASCADE"], capture_output=True)


def parse_range(values: list[str]) -> tuple[float, float]:
    if len(values) == 1:
        v = values[0].replace(":", "-").replace(",", "-")
        parts = [p for p in v.split("-") if p]
        nums = [float(p) for p in parts]
    else:
        nums = [float(v) for v in values]
    if len(nums) == 1:
        nums = nums * 2
    lo, hi = nums[0], nums[1]
    if lo <= 0 or hi < lo:
        raise argparse.ArgumentTypeError("--seconds-between-kills needs 0 < MIN <= MAX")
    return lo, hi


def main() -> int:
    default_bin = os.path.join(ROOT, "target", "release", "stockroom")
    if not os.path.exists(default_bin):
        default_bin = os.path.join(ROOT, "target", "debug", "stockroom")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=default_bin, help="the stockroom binary (default: %(default)s)")
    ap.add_argument("--database-url", help="sqlite://PATH, or a PostgreSQL server URL (a fresh schema is created "
                    "on it with psql); default: a SQLite file in a temporary folder")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs to send (default %(default)s)")
    ap.add_argument("--seconds-between-kills", nargs="+", default=["1", "4"], metavar="S",
                    help="the load runs a random time in this range before each kill: MIN MAX, or MIN-MAX "
                    "(default 1 4)")
    ap.add_argument("--workers", type=int, default=8, help="concurrent client threads (default %(default)s)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--replays", type=int, default=25, help="acknowledged requests re-sent after each restart")
    ap.add_argument("--workdir", help="where the database (SQLite), request log and server log go "
                    "(default: a new temporary folder, removed after a passing run)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder / PostgreSQL schema")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    lo, hi = parse_range(args.seconds_between_kills)
    if not os.access(args.bin, os.X_OK):
        print(f"stockroom binary not found or not executable: {args.bin}", file=sys.stderr)
        return 2
    random.seed(args.seed)
    rng = random.Random(args.seed)
    workdir = args.workdir or tempfile.mkdtemp(prefix="stockroom-crash-")
    os.makedirs(workdir, exist_ok=True)
    # Run a private copy: a rebuild of the binary during the run (others may be compiling) must
    # not change the server between two restarts.
    source_bin = os.path.abspath(args.bin)
    args.bin = os.path.join(workdir, "stockroom")
    shutil.copy2(source_bin, args.bin)
    schema = None
    server_url = None
    if not args.database_url:
        args.database_url = f"sqlite://{os.path.join(workdir, 'crash.db')}"
        backend = "sqlite"
    elif args.database_url.startswith(("postgres://", "postgresql://")):
        backend = "postgres"
        server_url = args.database_url
        if "search_path" not in args.database_url:
            schema, args.database_url = fresh_postgres_schema(server_url)
    else:
        backend = "sqlite"

    print(f"crash test: {backend}, {args.kills} kills, {args.workers} workers, load {lo}-{hi}s between kills, "
          f"seed {args.seed}", flush=True)
    print(f"  binary   {source_bin} (copied to {args.bin})\n  database {args.database_url}\n  workdir  {workdir} "
          f"(requests.jsonl, server.log)", flush=True)

    run = Run(args, workdir)
    workers: list[Worker] = []
    started = time.monotonic()
    try:
        run.server.start()
        setup(run)
        cycle_checks(run, "after setup", rng)
        workers = [Worker(run, i + 1) for i in range(args.workers)]
        for w in workers:
            w.start()
        for k in range(1, args.kills + 1):
            run.gate.open()
            load = rng.uniform(lo, hi)
            time.sleep(load)
            if run.abort:
                raise Abort("a worker stopped")
            run.last_killed_gen = run.server.gen
            run.kill_times[run.server.gen] = time.time()
            run.server.kill()
            run.gate.close()
            run.cycle += 1
            took = run.server.start()
            run.restart_times.append(took)
            if not run.gate.drain(QUIESCE_TIMEOUT_S):
                raise Abort(f"workers did not settle within {QUIESCE_TIMEOUT_S}s after restart {k}")
            if run.abort:
                raise Abort("a worker stopped")
            with run.log.lock:
                hit = [r for r in run.log.reqs if run.last_killed_gen in r.unknown_gens]
                n_reqs = len(run.log.reqs)
            run.in_flight_at_kill.append(len(hit))
            kinds = collections.Counter(
                r.kind + ("/" + r.meta["gateway"] if r.kind == "pay" else "") for r in hit
            )
            print(f"kill {k}/{args.kills} after {load:.1f}s of load: {len(hit)} requests in flight, outcome unknown "
                  f"({', '.join(f'{n} {kd}' for kd, n in sorted(kinds.items()))}); restarted in {took:.2f}s; "
                  f"{n_reqs} requests so far", flush=True)
            cycle_checks(run, f"kill {k}", rng)
        # The end: stop the load, then check everything once more.
        run.gate.stop()
        for w in workers:
            w.join(timeout=QUIESCE_TIMEOUT_S)
        print("final checks", flush=True)
        cycle_checks(run, "final", rng, final=True)
        code = run.server.stop()
        run.results.check("final: SIGTERM stops the server cleanly", [] if code == 0 else [f"exit {code}"],
                          "exit 0")
    except Abort as e:
        run.abort = True
        run.results.check("run", [f"aborted: {e}"])
    except Exception:  # noqa: BLE001
        run.abort = True
        run.results.check("run", [f"crashed: {traceback.format_exc()}"])
    finally:
        run.gate.stop()
        if run.server.proc is not None and run.server.proc.poll() is None:
            run.server.proc.kill()
            run.server.proc.wait()
        run.gateway.stop()
        run.pool.shutdown(wait=False, cancel_futures=True)
        run.log.close()
    for w in workers:
        if w.crashed:
            run.results.check(f"worker {w.wid}", [f"crashed: {w.crashed}"])
    run.results.check("no 5xx answers other than 503", run.server_errors, "none")
    run.results.check("no unexpected connection errors while the server was up", run.unexpected_errors, "none")

    # ---- summary ----
    reqs = run.log.reqs
    acked = [r for r in reqs if r.ok]
    refused = [r for r in reqs if r.status is not None and 400 <= r.status < 500]
    unknown = [r for r in reqs if r.unknown]
    kinds = collections.Counter(r.kind for r in acked)
    resolutions = collections.Counter(r.resolution or "unresolved" for r in unknown)
    http_pays = [r for r in reqs if r.kind == "pay" and r.meta.get("gateway") == "http"]
    pays_at_kill = [r for r in http_pays if r.unknown]
    elapsed = time.monotonic() - started
    print("\nsummary", flush=True)
    print(f"  backend                 {backend} ({args.database_url})")
    print(f"  kills                   {len(run.restart_times)} SIGKILLs, each followed by a restart "
          f"(restart took {min(run.restart_times, default=0):.2f}-{max(run.restart_times, default=0):.2f}s)")
    print(f"  requests                {len(reqs)} state-changing requests, {sum(r.attempts for r in reqs)} attempts")
    print(f"  acknowledged (2xx)      {len(acked)}: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print(f"  definitive refusals     {len(refused)} (4xx, e.g. insufficient stock, order conflicts)")
    print(f"  unknown outcomes        {len(unknown)} requests in flight at a kill, re-sent with their key:")
    for k, v in sorted(resolutions.items(), key=lambda kv: -kv[1]):
        print(f"                            {v:5d} {k}")
    print(f"  503 answers (retried)   {run.count503}")
    print(f"  payment gateway         " + ", ".join(f"{k} {v}" for k, v in sorted(run.gateway.counts.items())))
    print(f"  pending payments        {len(run.release_waits)} left pending by a kill and released by the sweep "
          f"(longest {max(run.release_waits, default=0):.1f}s after starting; timeout {PAYMENT_PENDING_TIMEOUT_MS/1000:.1f}s)"
          f"; {len(pays_at_kill)} http payments were in flight at a kill")
    print(f"  acknowledged re-checked {run.acked_checked} lookups of acknowledged requests")
    print(f"  replays checked         {run.replays} re-sends with the same Idempotency-Key ({run.replays_failed} wrong)")
    print(f"  verify                  {run.verify_runs} runs")
    print(f"  elapsed                 {elapsed:.0f}s; log {os.path.join(workdir, 'requests.jsonl')}")
    failed = run.results.failed
    if failed:
        print("\nfailures:")
        for f in run.results.failures:
            print("  " + f)
    print(f"\n{run.results.passed} passed, {failed} failed", flush=True)
    if failed == 0 and not args.keep:
        if schema and server_url:
            drop_postgres_schema(server_url, schema)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    elif schema:
        print(f"kept PostgreSQL schema {schema} and {workdir}")
    else:
        print(f"kept {workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
