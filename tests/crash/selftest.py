#!/usr/bin/env python3
"""Shows that crash.py can fail: runs it (SQLite, a few kills) with one fault injected from the
outside, and expects the named checks to catch it. The server binary is not changed.

  lost    while the server is down, an acknowledged history entry is deleted from the database
          (and its stock record adjusted): a lost acknowledged write
  double  now and then a stock transaction is sent a second time under a new key that the
          client does not log: a double-applied request
  stuck   while the server is down, the pending payments' deadlines are moved a day ahead: a
          payment attempt that is never released
  forged  one acknowledged answer in the client's log has its figures changed: the database no
          longer holds what the client was told

    tests/crash/selftest.py [--bin PATH] [fault ...]     # every fault when none is named
Exits 0 when every fault was caught.
"""

import argparse
import http.client
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the repository
import crash  # noqa: E402

# The check (label suffix) each fault must fail.
EXPECT = {
    "lost": ["every acknowledged request is in the database", "exact accounting"],
    "double": ["exact accounting"],
    "stuck": ["pending payments released"],
    "forged": ["every acknowledged request is in the database"],
}


def sqlite_path(url: str) -> str:
    return url.split("sqlite://", 1)[1]


def inject(fault: str) -> None:
    original_start = crash.Server.start

    def start(self):
        # Between the second kill and its restart the database is closed: tamper with it.
        if self.starts == 2 and fault in ("lost", "stuck"):
            db = sqlite3.connect(sqlite_path(self.url))
            if fault == "lost":
                row = db.execute(
                    "SELECT id, quantity FROM history WHERE product_id = 's1' AND action = 'increment' "
                    "ORDER BY seq LIMIT 1"
                ).fetchone()
                db.execute("DROP TRIGGER IF EXISTS history_no_delete")
                db.execute("DELETE FROM history WHERE id = ?", (row[0],))
                db.execute("UPDATE stock SET total = total - ? WHERE product_id = 's1'", (row[1],))
                print(f"[selftest] deleted acknowledged history entry {row[0]}", flush=True)
            else:
                n = db.execute(
                    "UPDATE payments SET expires_at = expires_at + 86400000000 WHERE status = 'pending'"
                ).rowcount
                print(f"[selftest] moved {n} pending payments' deadlines a day ahead", flush=True)
            db.commit()
            db.close()
        return original_start(self)

    crash.Server.start = start

    if fault == "double":
        original = crash.Worker.stock_transaction
        state = {"n": 0}

        def stock_transaction(self):
            original(self)
            state["n"] += 1
            if state["n"] % 150 == 0:
                req = self.run_.log.reqs[-1]
                c = crash.Conn(self.run_.server)
                try:
                    c.request(req.method, req.path, req.body, {
                        "Authorization": "Bearer " + self.run_.tokens.get(self.run_.server),
                        "Content-Type": "application/json",
                        "Idempotency-Key": req.key + "-again",
                    })
                    print(f"[selftest] sent {req.key} again under another key", flush=True)
                except (OSError, http.client.HTTPException):
                    pass
                finally:
                    c.close()

        crash.Worker.stock_transaction = stock_transaction

    if fault == "forged":
        original_checks = crash.cycle_checks
        state = {"done": False}

        def cycle_checks(run, label, rng, final=False):
            if not state["done"] and run.cycle >= 1:
                with run.log.lock:
                    for r in reversed(run.log.acked[run.checked_upto:]):
                        if r.kind == "txn" and r.ok:
                            r.resp["data"]["total"] += 1
                            print(f"[selftest] changed the logged answer of {r.key}", flush=True)
                            state["done"] = True
                            break
            return original_checks(run, label, rng, final)

        crash.cycle_checks = cycle_checks


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        fault = sys.argv[2]
        sys.argv = [sys.argv[0]] + sys.argv[3:]
        inject(fault)
        return crash.main()
    ap = argparse.ArgumentParser(description="crash.py catches injected faults")
    ap.add_argument("--bin", help="the stockroom binary (crash.py's default otherwise)")
    ap.add_argument("faults", nargs="*", default=list(EXPECT))
    args = ap.parse_args()
    missed = 0
    for fault in args.faults:
        workdir = tempfile.mkdtemp(prefix=f"stockroom-selftest-{fault}-")
        cmd = [sys.executable, __file__, "--child", fault, "--kills", "3", "--seed", "7",
               "--seconds-between-kills", "1.5", "2.5", "--workdir", workdir]
        if args.bin:
            cmd += ["--bin", args.bin]
        t0 = time.monotonic()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        failed = [line for line in out.stdout.splitlines() if line.lstrip().startswith("FAIL ")]
        caught = [e for e in EXPECT[fault] if any(e in line for line in failed)]
        ok = out.returncode != 0 and len(caught) == len(EXPECT[fault])
        missed += not ok
        print(f"{'caught' if ok else 'MISSED'} {fault}: crash.py exited {out.returncode} in "
              f"{time.monotonic() - t0:.0f}s; failed checks:")
        for line in dict.fromkeys(l.strip() for l in failed):
            print(f"    {line[:160]}")
        if not ok:
            print(out.stdout[-4000:], out.stderr[-2000:])
    print(f"{len(args.faults) - missed} of {len(args.faults)} injected faults caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
