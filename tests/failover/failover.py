#!/usr/bin/env python3
"""Failover and partition tests of Stockroom over PostgreSQL replication (issue 17).

Scenarios (run through tests/failover/run.sh and tests/failover/partition.sh, which build the
binary and clean up even if this program dies):

failover   A primary and a synchronous standby (two clusters on their own ports), two
           `stockroom serve` instances under load (idempotent stock increments and paid orders,
           each request retried with its Idempotency-Key until acknowledged), then per round:
           crash the primary (`pg_ctl stop -m immediate`), promote the standby, and check that
           every acknowledged request is there exactly once, `stockroom verify` passes on the new
           primary, both instances serve writes again within --recover-within seconds of the
           promotion without a restart; print how long writes were refused and what was
           answered meanwhile; then rebuild the old primary as a standby of the new one
           (pg_rewind) for the next round, which fails back.

           --url-style says how the instances name the database:
             multi   postgres://…@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=read-write
             single  the first primary only (today's binary): it cannot follow a promotion, so
                     after --recover-within the instances are restarted on the new primary's
                     URL (counted as a failure of the "without a restart" check) so that the
                     data checks still run;
             proxy   a TCP proxy per instance, switched to the promoted standby (a virtual IP
                     that moves).

partition  One primary, one TCP proxy per instance between Stockroom and PostgreSQL. Under load
           the proxies stall (stop forwarding, close nothing) for --stall seconds: every request
           must be answered (503) within --answer-within seconds, none may hang, and both
           instances must serve writes again within --recover-within seconds of the path coming
           back; then the same data checks.

While an instance is not serving, pg_stat_activity on the database it should reach and the TCP
connections of the Stockroom processes (`ss -tnoi`) are sampled every second into
<work>/diagnostics.log, and the states that lasted are summarised.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgnodes import DATABASE, Node, PgError, stop_all  # noqa: E402
from tcpproxy import Proxy  # noqa: E402

INC_PRODUCTS = [f"inc-{i}" for i in range(1, 5)]
ORDER_PRODUCTS = {"ord-1": 150, "ord-2": 999, "ord-3": 2500}
INITIAL_STOCK = 1_000_000
CLIENT_TIMEOUT_S = 45.0  # above the server's 30 s request timeout: a request past it hung
RETRY_PAUSE_S = 0.2
START_TIMEOUT_S = 60.0


class Abort(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(msg: str) -> None:
    print(msg, flush=True)


# ---- Stockroom instances --------------------------------------------------------------------


class Instance:
    def __init__(self, args, work: str, index: int, url: str) -> None:
        self.bin = args.bin
        self.index = index
        self.name = f"stockroom-{index}"
        self.port = free_port()
        self.url = url
        self.work = work
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(work, f"{self.name}.log"), "ab")
        self.starts = 0
        self.url_params = args.url_params
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKROOM_")}
        self.env.update(
            STOCKROOM_CLIENT_ID=args.client_id,
            STOCKROOM_CLIENT_SECRET=args.client_secret,
            STOCKROOM_LOG=os.environ.get("STOCKROOM_LOG", "info"),
        )

    def with_app_name(self, url: str) -> str:
        """The URL with application_name set, so pg_stat_activity tells the instances apart
        (and --url-params, if any)."""
        sep = "&" if "?" in url else "?"
        extra = f"&{self.url_params}" if self.url_params else ""
        return f"{url}{sep}application_name={self.name}{extra}"

    def start(self) -> None:
        self.starts += 1
        self.log.write(f"\n===== start {self.starts}: {self.url} =====\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", f"127.0.0.1:{self.port}",
             "--database-url", self.with_app_name(self.url)],
            env=self.env, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
        )
        with open(os.path.join(self.work, "pids", self.name), "w") as f:
            f.write(str(self.proc.pid))
        assert self.proc.stdout is not None
        started = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith("stockroom listening on"):
                    started.set()
                else:
                    lines.append(line)
                    self.log.write(b"[stdout] " + raw)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not started.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Abort(f"{self.name} did not start (exit {self.proc.returncode}); see "
                            f"{self.log.name}: {tail(self.log.name, 3)}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, url: str) -> None:
        self.stop()
        self.url = url
        self.start()


def tail(path: str, n: int) -> str:
    try:
        with open(path, "rb") as f:
            return " | ".join(f.read().decode(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


# ---- HTTP -----------------------------------------------------------------------------------


class Http:
    """One keep-alive connection to one instance."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict,
                timeout: float = CLIENT_TIMEOUT_S):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.inst.port, timeout=timeout)
        self.conn.timeout = timeout
        try:
            if self.conn.sock is not None:
                self.conn.sock.settimeout(timeout)
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = {"_raw": data[:300].decode(errors="replace")}
        return resp.status, parsed


def fetch_token(inst: Instance, client_id: str, secret: str, deadline: float) -> str:
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                   "client_secret": secret}).encode()
    h = Http(inst)
    while True:
        try:
            status, body = h.request("POST", "/oauth/access_token", form,
                                     {"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
            if status == 200:
                return body["access_token"]
            err = f"answered {status}"
        except (OSError, http.client.HTTPException) as e:
            err = repr(e)
        if time.monotonic() > deadline:
            raise Abort(f"no token from {inst.name}: {err}")
        time.sleep(RETRY_PAUSE_S)


# ---- the record of every attempt ------------------------------------------------------------


@dataclass
class Attempt:
    inst: int
    kind: str
    start: float
    end: float
    outcome: str  # the status code, or timeout / conn-error / refused

    @property
    def ok(self) -> bool:
        return self.outcome.isdigit() and 200 <= int(self.outcome) < 300


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.increments: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)  # pid -> (tx id, qty)
        self.carts: dict[str, tuple[str, int]] = {}  # cart -> (product, qty)
        self.orders: dict[str, str] = {}  # order id -> cart
        self.paid: dict[str, str] = {}  # order id -> payment id
        self.refusals: list[str] = []  # definitive answers other than success: none expected
        self.never_acked: list[str] = []

    def add(self, a: Attempt) -> None:
        with self.lock:
            self.attempts.append(a)


class Gate:
    """Workers pass it before each operation; close + drain waits until none is in flight."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.open_ = False
        self.stopping = False
        self.busy = 0

    def enter(self) -> bool:
        with self.cond:
            self.cond.wait_for(lambda: self.open_ or self.stopping)
            if self.stopping:
                return False
            self.busy += 1
            return True

    def leave(self) -> None:
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def set_open(self, on: bool) -> None:
        with self.cond:
            self.open_ = on
            self.cond.notify_all()

    def drain(self, timeout: float) -> bool:
        with self.cond:
            self.open_ = False
            return self.cond.wait_for(lambda: self.busy == 0, timeout=timeout)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()


# ---- load -----------------------------------------------------------------------------------


class Worker(threading.Thread):
    def __init__(self, run: "Run", inst: Instance, wid: int) -> None:
        super().__init__(name=f"worker-{wid}", daemon=True)
        self.run_ = run
        self.inst = inst
        self.wid = wid
        self.rng = random.Random(run.seed * 1000 + wid)
        self.http = Http(inst)
        self.seq = 0
        self.order: dict | None = None
        self.error: str | None = None

    def key(self) -> str:
        self.seq += 1
        return f"{self.run_.tag}-w{self.wid}-{self.seq}"

    def send(self, kind: str, method: str, path: str, obj) -> tuple[int, object]:
        """Sends until a definitive answer (anything but 503, 5xx or no answer), with one key."""
        run = self.run_
        body = json.dumps(obj).encode()
        key = self.key()
        give_up = time.monotonic() + run.args.ack_within
        while True:
            headers = {"Authorization": "Bearer " + run.token, "Content-Type": "application/json",
                       "Idempotency-Key": key}
            t0 = time.monotonic()
            run.inflight[self.wid] = (self.inst.index, t0)
            try:
                status, resp = self.http.request(method, path, body, headers)
                outcome = str(status)
            except ConnectionRefusedError:
                status, resp, outcome = 0, None, "refused"
            except TimeoutError:
                status, resp, outcome = 0, None, "timeout"
            except (OSError, http.client.HTTPException):
                status, resp, outcome = 0, None, "conn-error"
            run.inflight.pop(self.wid, None)
            run.record.add(Attempt(self.inst.index, kind, t0, time.monotonic(), outcome))
            if status == 401:
                run.refresh_token()
                continue
            if status and status < 500:
                return status, resp
            if time.monotonic() > give_up:
                with run.record.lock:
                    run.record.never_acked.append(f"{method} {path} key {key}: last {outcome}")
                raise Abort(f"{method} {path} (key {key}) not acknowledged within {run.args.ack_within:.0f} s")
            time.sleep(RETRY_PAUSE_S)

    def run(self) -> None:
        gate = self.run_.gate
        while gate.enter():
            try:
                self.step()
            except Abort as e:
                self.error = str(e)
                self.run_.failed_workers.append(self.error)
                return
            except Exception:  # noqa: BLE001 - a bug in this script: report it
                self.error = traceback.format_exc()
                self.run_.failed_workers.append(self.error)
                return
            finally:
                gate.leave()

    def step(self) -> None:
        if self.order is None and self.rng.random() < 0.5:
            self.increment()
        else:
            self.order_step()

    def increment(self) -> None:
        pid = self.rng.choice(INC_PRODUCTS)
        qty = self.rng.randint(1, 9)
        status, resp = self.send("increment", "POST", f"/v2/inventories/{pid}/transactions",
                                 {"data": {"type": "stock-transaction", "action": "increment", "quantity": qty}})
        rec = self.run_.record
        with rec.lock:
            if status in (200, 201):
                rec.increments[pid].append((resp["data"]["id"], qty))
            else:
                rec.refusals.append(f"increment {pid}: {status} {json.dumps(resp)[:200]}")

    def order_step(self) -> None:
        rec = self.run_.record
        o = self.order
        if o is None:
            o = self.order = {"cart": f"{self.run_.tag}-w{self.wid}-c{self.seq}", "phase": "add"}
        if o["phase"] == "add":
            pid = self.rng.choice(list(ORDER_PRODUCTS))
            qty = self.rng.randint(1, 3)
            status, resp = self.send("add", "POST", f"/v2/carts/{o['cart']}/items",
                                     {"data": {"type": "cart_item", "id": pid, "quantity": qty}})
            with rec.lock:
                if status in (200, 201):
                    rec.carts[o["cart"]] = (pid, qty)
                    o["phase"] = "checkout"
                else:
                    rec.refusals.append(f"add to {o['cart']}: {status} {json.dumps(resp)[:200]}")
                    self.order = None
        elif o["phase"] == "checkout":
            status, resp = self.send("checkout", "POST", f"/v2/carts/{o['cart']}/checkout",
                                     {"data": {"customer": {"email": "f@o.test", "name": "failover"},
                                               "billing_address": {"line_1": "x", "country": "GB"}}})
            with rec.lock:
                if status == 201:
                    o["id"] = resp["data"]["id"]
                    rec.orders[o["id"]] = o["cart"]
                    o["phase"] = "pay"
                else:
                    rec.refusals.append(f"checkout {o['cart']}: {status} {json.dumps(resp)[:200]}")
                    self.order = None
        elif o["phase"] == "pay":
            status, resp = self.send("pay", "POST", f"/v2/orders/{o['id']}/payments",
                                     {"data": {"gateway": "manual", "method": "purchase"}})
            with rec.lock:
                if status == 200 and resp["data"]["status"] == "complete":
                    rec.paid[o["id"]] = resp["data"]["id"]
                else:
                    rec.refusals.append(f"pay {o['id']}: {status} {json.dumps(resp)[:200]}")
            self.order = None


# ---- diagnostics ----------------------------------------------------------------------------


class Diagnostics:
    """Samples pg_stat_activity on a node and the Stockroom processes' TCP connections."""

    def __init__(self, work: str) -> None:
        self.path = os.path.join(work, "diagnostics.log")
        self.file = open(self.path, "a")
        self.seen: collections.Counter = collections.Counter()  # (instance, state, query) -> samples

    def sample(self, label: str, node: Node, instances: list[Instance]) -> None:
        now = time.strftime("%H:%M:%S")
        self.file.write(f"\n--- {now} {label}: pg_stat_activity on {node}\n")
        try:
            rows = node.sql(
                "SELECT application_name, client_port, state, coalesce(wait_event_type,'-'), "
                "coalesce(wait_event,'-'), coalesce(round(extract(epoch from now()-xact_start)::numeric,1)::text,'-'), "
                "round(extract(epoch from now()-state_change)::numeric,1), "
                "regexp_replace(left(query, 70), '\\s+', ' ', 'g') "
                "FROM pg_stat_activity WHERE datname = 'stockroom' AND pid <> pg_backend_pid() "
                "ORDER BY application_name, state", timeout=5)
            self.file.write(rows + "\n")
            for line in rows.splitlines():
                f = line.split("|")
                if len(f) >= 8 and f[2] in ("idle in transaction", "active"):
                    self.seen[(f[0], f[2], f[3] + "/" + f[4], f[7][:50])] += 1
        except (PgError, subprocess.TimeoutExpired) as e:
            self.file.write(f"(no answer: {e})\n")
        for inst in instances:
            if inst.proc is None or inst.proc.poll() is not None:
                continue
            out = subprocess.run(["ss", "-tnoi", "-p", "state", "all"], capture_output=True, text=True)
            lines = out.stdout.splitlines()
            mine = [f"{a.strip()} {b.strip()}" for a, b in zip(lines, lines[1:] + [""])
                    if f"pid={inst.proc.pid}," in a and inst.proc is not None]
            self.file.write(f"{inst.name} (pid {inst.proc.pid}) TCP connections:\n")
            for m in mine:
                if f":{inst.port} " not in m.split("users:")[0]:
                    self.file.write("  " + " ".join(m.split()[:6]) + "  " + " ".join(
                        t for t in m.split() if t.startswith(("timer:", "rto:", "retrans:", "unacked:"))) + "\n")
        self.file.flush()

    def summary(self, min_samples: int = 2) -> list[str]:
        return [f"{n:3d} samples  {inst or '?'}  {state}  wait {wait}  last: {q}"
                for (inst, state, wait, q), n in self.seen.most_common() if n >= min_samples]


# ---- a run ----------------------------------------------------------------------------------


class Run:
    def __init__(self, args) -> None:
        self.args = args
        self.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
        self.tag = "%06x" % random.Random(self.seed).getrandbits(24)
        self.work = args.work
        os.makedirs(os.path.join(self.work, "pids"), exist_ok=True)
        self.record = Record()
        self.gate = Gate()
        self.instances: list[Instance] = []
        self.workers: list[Worker] = []
        self.proxies: list[Proxy] = []
        self.nodes: list[Node] = []
        self.token = ""
        self.token_lock = threading.Lock()
        self.failed_workers: list[str] = []
        self.inflight: dict[int, tuple[int, float]] = {}  # worker -> (instance, attempt start)
        self.checks_failed: list[str] = []
        self.checks_passed = 0
        self.figures: list[str] = []
        self.diag = Diagnostics(self.work)

    # -- checks --

    def check(self, name: str, problems: list[str], detail: str = "") -> bool:
        if problems:
            shown = "\n".join(f"       - {p}" for p in problems[:12])
            more = f" (and {len(problems) - 12} more)" if len(problems) > 12 else ""
            self.checks_failed.append(f"{name}: {problems[0]}")
            say(f"  FAIL {name}: {len(problems)} problem(s){more}\n{shown}")
            return False
        self.checks_passed += 1
        say(f"  ok   {name}" + (f": {detail}" if detail else ""))
        return True

    # -- setup --

    def refresh_token(self) -> None:
        with self.token_lock:
            self.token = fetch_token(self.instances[0], self.args.client_id, self.args.client_secret,
                                     time.monotonic() + self.args.ack_within)

    def start_instances(self, urls: list[str]) -> None:
        for i, url in enumerate(urls, start=1):
            inst = Instance(self.args, self.work, i, url)
            inst.start()  # one after the other: the first applies the migrations
            self.instances.append(inst)
        self.refresh_token()

    def seed_data(self) -> None:
        w = Worker(self, self.instances[0], 0)
        for pid, price in ORDER_PRODUCTS.items():
            status, resp = w.send("setup", "POST", "/v2/products", {"data": {
                "type": "product", "id": pid,
                "attributes": {"name": pid, "sku": pid, "price": {"amount": price, "currency": "USD"}}}})
            if status != 201:
                raise Abort(f"creating product {pid}: {status} {resp}")
        for pid in INC_PRODUCTS + list(ORDER_PRODUCTS):
            status, resp = w.send("setup", "POST", f"/v2/inventories/{pid}", {"data": {"quantity": INITIAL_STOCK}})
            if status != 201:
                raise Abort(f"creating stock {pid}: {status} {resp}")
        self.record.attempts.clear()

    def start_load(self) -> None:
        wid = 0
        for inst in self.instances:
            for _ in range(self.args.workers):
                wid += 1
                w = Worker(self, inst, wid)
                self.workers.append(w)
                w.start()
        self.gate.set_open(True)

    def drain(self) -> None:
        if not self.gate.drain(self.args.ack_within + CLIENT_TIMEOUT_S + 10):
            raise Abort("the load did not drain (requests still unacknowledged)")
        if self.failed_workers:
            raise Abort("a worker failed: " + self.failed_workers[0])

    # -- waiting for service --

    def first_ok_after(self, inst: Instance, t: float) -> float | None:
        with self.record.lock:
            ends = [a.end for a in self.record.attempts if a.inst == inst.index and a.ok and a.end > t]
        return min(ends) if ends else None

    def wait_served(self, since: float, within: float, node: Node, label: str) -> dict[int, float]:
        """Waits until every instance has acknowledged a write since `since` (at most `within`
        seconds), sampling diagnostics each second; returns instance -> seconds since `since`."""
        deadline = since + within
        got: dict[int, float] = {}
        next_sample = time.monotonic()
        while time.monotonic() < deadline:
            for inst in self.instances:
                if inst.index not in got:
                    t = self.first_ok_after(inst, since)
                    if t is not None:
                        got[inst.index] = t - since
            if len(got) == len(self.instances):
                break
            if time.monotonic() >= next_sample:
                self.diag.sample(label, node, self.instances)
                next_sample += 1.0
            time.sleep(0.05)
        return got

    # -- figures --

    def window_figures(self, label: str, t_fault: float, t_back: float, served: dict[int, float],
                       fault: str) -> None:
        """Per instance: its last acknowledged write before the path back (`t_back`: promotion,
        end of stall), its first after, and what it answered in between."""
        now = time.monotonic()
        with self.record.lock:
            attempts = list(self.record.attempts)
        for inst in self.instances:
            mine = [a for a in attempts if a.inst == inst.index]
            t_to = t_back + served[inst.index] if inst.index in served else now
            last_ok = max((a.end for a in mine if a.ok and a.end < t_back), default=t_fault)
            window = [a for a in mine if last_ok < a.end <= t_to and not a.ok]
            counts = collections.Counter(a.outcome for a in window)
            longest = max((a.end - a.start for a in mine if a.end > t_fault and a.start < t_to), default=0.0)
            answers = ", ".join(f"{n}x {o}" for o, n in sorted(counts.items())) or "none"
            waiting = [now - t for i, t in list(self.inflight.values()) if i == inst.index]
            if waiting and inst.index not in served:
                answers += f"; {len(waiting)} request(s) still unanswered, the oldest for {max(waiting):.1f} s"
            back = (f"first after it at +{served[inst.index]:.2f} s" if inst.index in served
                    else "none since (NOT serving)")
            line = (f"{label} {inst.name}: last write acknowledged at {fault}{last_ok - t_fault:+.2f} s, "
                    f"{back}: {t_to - last_ok:.2f} s without writes; refused meanwhile: {answers}; "
                    f"longest answer {longest:.2f} s")
            say("  figure " + line)
            self.figures.append(line)

    # -- data checks --

    def check_data(self, node: Node, label: str) -> None:
        self.check_increments(node, label)
        self.check_orders(node, label)
        self.check(f"{label}: no request was refused", self.record.refusals[:],
                   "every definitive answer was a success")

    def check_increments(self, node: Node, label: str) -> None:
        rec = self.record
        problems: list[str] = []
        for pid in INC_PRODUCTS:
            rows = node.sql(f"SELECT id, quantity FROM history WHERE product_id = '{pid}' AND action = 'increment'")
            got = [r.split("|") for r in rows.splitlines() if r]
            want = rec.increments.get(pid, [])
            dup = [i for i, n in collections.Counter(g[0] for g in got).items() if n > 1]
            missing = {i for i, _ in want} - {g[0] for g in got}
            extra = {g[0] for g in got} - {i for i, _ in want}
            if missing:
                problems.append(f"{pid}: {len(missing)} acknowledged increment(s) missing, e.g. {sorted(missing)[:3]}")
            if extra:
                problems.append(f"{pid}: {len(extra)} increment(s) in the history that no one was answered")
            if dup:
                problems.append(f"{pid}: duplicate history ids {dup[:3]}")
            total = node.sql(f"SELECT total FROM stock WHERE product_id = '{pid}'")
            want_total = INITIAL_STOCK + sum(q for _, q in want)
            if total != str(want_total):
                problems.append(f"{pid}: total {total}, acknowledged increments make it {want_total}")
        n_inc = sum(len(v) for v in rec.increments.values())
        self.check(f"{label}: every acknowledged increment is in the history exactly once", problems,
                   f"{n_inc} increments on {len(INC_PRODUCTS)} products, totals match")

    def check_orders(self, node: Node, label: str) -> None:
        rec = self.record
        problems: list[str] = []
        carts = dict(line.split("|", 1) for line in node.sql(
            f"SELECT cart_id, product_id || ':' || quantity FROM cart_items WHERE cart_id LIKE '{self.tag}-%'"
        ).splitlines() if line)
        for cart, (pid, qty) in rec.carts.items():
            if carts.get(cart) != f"{pid}:{qty}":
                problems.append(f"cart {cart}: holds {carts.get(cart)!r}, acknowledged {pid}:{qty}")
        if len(carts) != len(rec.carts):
            problems.append(f"{len(carts)} carts with items in the database, {len(rec.carts)} acknowledged")
        orders = {}
        for line in node.sql("SELECT o.id, o.cart_id, o.payment, count(p.id) FILTER (WHERE p.status = 'complete'), "
                             "count(p.id) FROM orders o LEFT JOIN payments p ON p.order_id = o.id "
                             "GROUP BY o.id").splitlines():
            oid, cart, payment, complete, attempts = line.split("|")
            orders[oid] = (cart, payment, int(complete), int(attempts))
        for oid, cart in rec.orders.items():
            if oid not in orders:
                problems.append(f"order {oid} (acknowledged checkout of {cart}) is missing")
            elif orders[oid][0] != cart:
                problems.append(f"order {oid}: cart {orders[oid][0]}, acknowledged {cart}")
        if set(orders) - set(rec.orders):
            problems.append(f"{len(set(orders) - set(rec.orders))} order(s) no checkout was answered with")
        per_cart = collections.Counter(v[0] for v in orders.values())
        problems += [f"cart {c} checked out {n} times" for c, n in per_cart.items() if n > 1]
        for oid in rec.orders:
            if oid not in orders:
                continue
            _, payment, complete, attempts = orders[oid]
            if oid in rec.paid and (payment != "paid" or complete != 1 or attempts != 1):
                problems.append(f"order {oid}: payment {payment}, {complete} complete of {attempts} attempts; "
                                "acknowledged one purchase")
            if oid not in rec.paid and attempts != 0:
                problems.append(f"order {oid}: {attempts} payment attempts, none acknowledged")
        alloc_want: collections.Counter = collections.Counter()
        for oid in rec.paid:
            pid, qty = rec.carts[rec.orders[oid]]
            alloc_want[pid] += qty
        for pid in ORDER_PRODUCTS:
            got = node.sql(f"SELECT allocated FROM stock WHERE product_id = '{pid}'")
            if got != str(alloc_want[pid]):
                problems.append(f"{pid}: allocated {got}, acknowledged payments hold {alloc_want[pid]}")
        self.check(f"{label}: every acknowledged cart, checkout and payment is there exactly once", problems,
                   f"{len(rec.carts)} carts, {len(rec.orders)} orders, {len(rec.paid)} paid; allocations match")

    def verify(self, node: Node, label: str) -> None:
        out = subprocess.run([self.args.bin, "verify", "--database-url", node.url()],
                             capture_output=True, text=True, timeout=120)
        summary = (out.stdout.strip().splitlines() or [""])[-1]
        self.check(f"{label}: stockroom verify passes on {node}",
                   [] if out.returncode == 0 else [f"exit {out.returncode}: {out.stdout[-500:]} {out.stderr[-500:]}"],
                   summary)

    def unexpected_answers(self, label: str, t_from: float, t_to: float) -> None:
        """Only 2xx and 503 are fit answers while the database fails over (a 500 says
        'broken', not 'try again'; a dropped connection leaves the client guessing)."""
        with self.record.lock:
            bad = collections.Counter(a.outcome for a in self.record.attempts
                                      if t_from < a.end <= t_to and not a.ok and a.outcome != "503")
        self.check(f"{label}: every request was answered 2xx or 503", [f"{n}× {o}" for o, n in bad.items()])

    # -- teardown --

    def cleanup(self) -> None:
        self.gate.stop()
        for inst in self.instances:
            inst.stop()
        for p in self.proxies:
            p.close()
        stop_all(self.work)


# ---- scenarios ------------------------------------------------------------------------------


def failover(run: Run) -> None:
    args = run.args
    a, b = Node(run.work, "pg-a", free_port()), Node(run.work, "pg-b", free_port())
    run.nodes = [a, b]
    say(f"== clusters: primary {a}, {'synchronous' if args.sync else 'asynchronous'} standby {b}")
    a.init_primary(sync=args.sync)
    b.make_standby_of(a)
    b.wait_streaming(a)
    primary, standby = a, b
    instance_urls = failover_urls(run, a, b)
    say(f"== {args.instances} instances, URL style {args.url_style}: {instance_urls[0]}")
    run.start_instances(instance_urls)
    run.seed_data()
    run.start_load()
    for rnd in range(1, args.rounds + 1):
        failover_round(run, f"round {rnd} ({primary.name} -> {standby.name})", primary, standby)
        primary, standby = standby, primary
        run.gate.set_open(True)


def failover_urls(run: Run, a: Node, b: Node) -> list[str]:
    args = run.args
    if args.url_style == "multi":
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in (a, b))
        return [f"postgres://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"] * args.instances
    if args.url_style == "proxy":
        for _ in range(args.instances):
            p = Proxy(a.port)
            p.start()
            run.proxies.append(p)
        return [f"postgres://postgres@127.0.0.1:{p.port}/{DATABASE}" for p in run.proxies]
    return [a.url()] * args.instances


def failover_round(run: Run, label: str, primary: Node, standby: Node) -> None:
    args = run.args
    say(f"\n== {label}: load for {args.load_before:.0f} s, then the primary crashes")
    time.sleep(args.load_before)
    t_crash = time.monotonic()
    if args.fault in ("isolate", "host-down"):
        for p in run.proxies:
            p.stall()  # new connections wait (as for an address nobody answers) until the switch
            p.isolate_current(reset_on_send=args.fault == "host-down")
    else:
        primary.stop("immediate")
    time.sleep(args.detect)  # the time a watcher takes to decide the primary is gone
    if args.switch_early:
        for p in run.proxies:
            p.switch(standby.port, cut_existing=not args.keep_connections)
    standby.promote()
    if args.sync and not args.keep_sync:
        # The promoted node has no standby yet: left synchronous, every commit would wait for
        # one forever (see docs/operations.md). The old primary rejoins below.
        standby.set_sync_standbys("")
    for p in run.proxies:
        p.switch(standby.port, cut_existing=not args.keep_connections)
        p.flow()
    t_promoted = time.monotonic()
    say(f"  crash -> promoted in {t_promoted - t_crash:.2f} s (detection {args.detect:.1f} s + promotion)")
    served = run.wait_served(t_promoted, args.recover_within, standby, label)
    run.check(f"{label}: both instances serve writes within {args.recover_within:.0f} s of the promotion, "
              "without a restart",
              [f"{i.name}: no write acknowledged" for i in run.instances if i.index not in served],
              ", ".join(f"{run.instances[i - 1].name} after {s:.2f} s" for i, s in sorted(served.items())))
    run.window_figures(label, t_crash, t_promoted, served, "crash")
    t_restart = float("inf")
    if len(served) < len(run.instances):
        summary = run.diag.summary()
        if summary:
            say("  sessions on the new primary that stayed busy (see diagnostics.log):")
            for s in summary[:12]:
                say("    " + s)
        run.diag.seen.clear()
        if args.url_style == "single":
            say("  restarting the instances on the new primary's URL (the single-host URL cannot follow)")
            t_restart = time.monotonic()
            for inst in run.instances:
                inst.restart(standby.url())
        else:
            say(f"  waiting up to {args.ack_within:.0f} s more for the instances to serve by themselves")
            t_restart = time.monotonic()
        again = run.wait_served(t_restart, args.ack_within, standby, label + " (late)")
        line = (f"{label}: " + ("after restarting on the new URL" if args.url_style == "single" else
                                f"+{t_restart - t_promoted:.1f} s after the promotion") +
                ", writes served again in " +
                (", ".join(f"{run.instances[i - 1].name} {s:.2f} s" for i, s in sorted(again.items()))
                 or f"none within {args.ack_within:.0f} s"))
        say("  figure " + line)
        run.figures.append(line)
    time.sleep(args.load_after)
    say("  draining the load (every request retried until acknowledged)")
    run.drain()
    run.unexpected_answers(label, t_crash, t_restart if args.url_style == "single" else float("inf"))
    run.check_data(standby, label)
    run.verify(standby, label)
    say(f"  rebuilding {primary.name} as a standby of {standby.name} (pg_rewind)")
    t0 = time.monotonic()
    primary.rewind_to_standby_of(standby)
    primary.wait_streaming(standby)
    if args.sync:
        standby.set_sync_standbys("*")
    say(f"  {primary.name} streams from {standby.name} after {time.monotonic() - t0:.1f} s")


def partition(run: Run) -> None:
    args = run.args
    a = Node(run.work, "pg-a", free_port())
    run.nodes = [a]
    say(f"== cluster {a}; one TCP proxy per instance")
    a.init_primary(sync=False)
    urls = []
    for _ in range(args.instances):
        p = Proxy(a.port)
        p.start()
        run.proxies.append(p)
        urls.append(f"postgres://postgres@127.0.0.1:{p.port}/{DATABASE}")
    run.start_instances(urls)
    run.seed_data()
    run.start_load()
    stalled = run.proxies if args.stall_which == "all" else run.proxies[:1]
    for rnd in range(1, args.rounds + 1):
        partition_round(run, f"stall {rnd} ({len(stalled)} of {len(run.proxies)} paths, {args.stall:.0f} s)",
                        a, stalled)
        run.gate.set_open(True)


def partition_round(run: Run, label: str, node: Node, stalled: list[Proxy]) -> None:
    args = run.args
    say(f"\n== {label}: load for {args.load_before:.0f} s, then the path to the database stalls")
    time.sleep(args.load_before)
    t_stall = time.monotonic()
    for p in stalled:
        p.stall()
    next_sample = time.monotonic()
    while time.monotonic() < t_stall + args.stall:
        if time.monotonic() >= next_sample:
            run.diag.sample(label, node, run.instances)
            next_sample += 1.0
        time.sleep(0.05)
    for p in stalled:
        p.flow()
    t_flow = time.monotonic()
    served = run.wait_served(t_flow, args.recover_within, node, label + " recovering")
    run.check(f"{label}: both instances serve writes within {args.recover_within:.0f} s of the path's return",
              [f"{i.name}: no write acknowledged" for i in run.instances if i.index not in served],
              ", ".join(f"{run.instances[i - 1].name} after {s:.2f} s" for i, s in sorted(served.items())))
    run.window_figures(label, t_stall, t_flow, served, "stall")
    summary = run.diag.summary(min_samples=3)
    if summary:
        say("  sessions busy for 3+ samples during the stall (see diagnostics.log):")
        for s in summary[:10]:
            say("    " + s)
    run.diag.seen.clear()
    time.sleep(args.load_after)
    say("  draining the load")
    run.drain()
    with run.record.lock:
        during = [x for x in run.record.attempts if x.start >= t_stall and x.end <= t_flow]
        # Every attempt is over now (drained): one that overlapped the stall and took longer than
        # the bound hung, whether it ended during the stall or after.
        hung = [x for x in run.record.attempts
                if x.start < t_flow and x.end > t_stall and x.end - x.start > args.answer_within]
    run.check(f"{label}: every request answered within {args.answer_within:.0f} s",
              [f"{run.instances[x.inst - 1].name} {x.kind}: {x.outcome} after {x.end - x.start:.1f} s"
               for x in hung],
              f"{len(during)} answers while stalled, {sum(1 for x in during if x.outcome == '503')} of them 503")
    run.unexpected_answers(label, t_stall, float("inf"))
    run.check_data(node, label)
    run.verify(node, label)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=["failover", "partition"])
    ap.add_argument("--bin", required=True, help="the stockroom binary")
    ap.add_argument("--work", required=True, help="a folder for clusters, logs and pid files")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--url-style", choices=["multi", "single", "proxy"], default="multi")
    ap.add_argument("--sync", type=int, default=1, help="1: synchronous standby (default); 0: asynchronous")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--workers", type=int, default=3, help="client threads per instance")
    ap.add_argument("--load-before", type=float, default=4.0, help="seconds of load before each fault")
    ap.add_argument("--load-after", type=float, default=2.0, help="seconds of load after recovery")
    ap.add_argument("--detect", type=float, default=1.0, help="seconds from the crash to the promotion")
    ap.add_argument("--recover-within", type=float, default=10.0)
    ap.add_argument("--ack-within", type=float, default=120.0,
                    help="seconds a request may go unacknowledged before the run fails")
    ap.add_argument("--stall", type=float, default=20.0)
    ap.add_argument("--stall-which", choices=["all", "one"], default="all")
    ap.add_argument("--answer-within", type=float, default=10.0,
                    help="partition: the longest a request may wait for its answer")
    ap.add_argument("--keep-sync", action="store_true",
                    help="failover: leave synchronous_standby_names on the promoted node (commits then wait)")
    ap.add_argument("--keep-connections", action="store_true",
                    help="failover, proxy style: switch only new connections, keep those open to the old primary")
    ap.add_argument("--switch-early", action="store_true",
                    help="failover, proxy style: move the proxies to the standby before promoting it")
    ap.add_argument("--fault", choices=["crash", "isolate", "host-down"], default="crash",
                    help="failover: crash the primary (stop -m immediate: its kernel closes every "
                    "connection); isolate: leave it running and stall every proxied connection to it "
                    "(a partition); host-down: the same, but a connection is reset as soon as "
                    "Stockroom sends on it (the host is gone and its address moved). The last two "
                    "need the proxy style and --keep-connections")
    ap.add_argument("--url-params", default="",
                    help="more query parameters for the instances' database URL, e.g. "
                    "'options=-c%%20idle_in_transaction_session_timeout%%3D5000'")
    ap.add_argument("--seed", type=int)
    args = ap.parse_args()
    args.client_id = "failover-admin"
    args.client_secret = "failover-" + "%016x" % random.getrandbits(64)

    run = Run(args)
    say(f"seed {run.seed}; work folder {run.work}")
    t0 = time.monotonic()
    try:
        (failover if args.scenario == "failover" else partition)(run)
    except (Abort, PgError) as e:
        run.checks_failed.append(f"aborted: {e}")
        say(f"\nABORTED: {e}")
    except KeyboardInterrupt:
        run.checks_failed.append("interrupted")
    finally:
        run.cleanup()
    setup = (f"URL style {args.url_style}, {'sync' if args.sync else 'async'} replication, fault {args.fault}"
             if args.scenario == "failover" else f"{args.stall_which} paths stalled {args.stall:.0f} s")
    say(f"\n== figures ({args.scenario}: {setup}; {time.monotonic() - t0:.0f} s)")
    for f in run.figures:
        say("  " + f)
    say(f"\n{run.checks_passed} passed, {len(run.checks_failed)} failed")
    for f in run.checks_failed:
        say("  FAILED " + f)
    return 1 if run.checks_failed else 0


if __name__ == "__main__":
    sys.exit(main())
