"""PostgreSQL clusters for the failover tests: a primary and its standbys, each an `initdb`
data directory under the run's work folder, on a port of its own, started and stopped with
`pg_ctl` (as the `postgres` user when run as root; PostgreSQL refuses to run as root).

Nothing is installed or registered system-wide (no pg_createcluster entries): removing the work
folder after `stop_all` leaves the machine as it was. `stop_all` is also what run.sh's trap does
in bash, from the same files (postmaster.pid), if this process dies first.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time

DATABASE = "stockroom"


def bindir() -> str:
    """The PostgreSQL server binaries: $PG_BINDIR, else `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        if os.path.exists(os.path.join(out.stdout.strip(), "pg_ctl")):
            return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries (pg_ctl) found; set PG_BINDIR")
    return os.path.dirname(found[-1])


def as_postgres(cmd: list[str]) -> list[str]:
    """The command, run as the postgres user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PgError(RuntimeError):
    pass


# Settings every node runs with (a standby copies the primary's file; what differs per node —
# port, name — is given on pg_ctl's command line). Replication: WAL for a standby, hints for
# pg_rewind, and enough WAL kept that a rebuilt standby can catch up.
BASE_SETTINGS = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sockets}'
wal_level = replica
wal_log_hints = on
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '256MB'
hot_standby = on
max_connections = 100
shared_buffers = '32MB'
synchronous_commit = on
log_line_prefix = '%m [%p] %q%a '
log_min_messages = warning
log_connections = off
"""


class Node:
    def __init__(self, work: str, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.root = os.path.join(work, "pg")
        self.data = os.path.join(self.root, name)
        self.log = os.path.join(self.root, f"{name}.log")
        self.bin = bindir()

    def __repr__(self) -> str:
        return f"{self.name}:{self.port}"

    # -- commands --

    def _run(self, tool: str, *args: str, check: bool = True, timeout: float = 120) -> str:
        cmd = as_postgres([os.path.join(self.bin, tool), *args])
        t0 = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        with open(os.path.join(self.root, f"{self.name}-tools.log"), "a") as log:
            log.write(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}"
                      f"(exit {out.returncode}, {time.monotonic() - t0:.2f} s)\n")
        if check and out.returncode != 0:
            raise PgError(f"{tool} {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
        return out.stdout

    def sql(self, query: str, db: str = DATABASE, timeout: float = 30) -> str:
        """Runs one statement with psql; its rows as `|`-separated lines."""
        out = subprocess.run(
            [os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", db, "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-c", query],
            capture_output=True, text=True, timeout=timeout,
        )
        if out.returncode != 0:
            raise PgError(f"{self}: {query[:120]!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    def url(self, db: str = DATABASE) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    # -- life cycle --

    def init_primary(self, sync: bool) -> None:
        os.makedirs(self.root, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(os.path.dirname(self.root), "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(BASE_SETTINGS.format(sockets=self.root))
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        self.start()
        self.sql(f"CREATE DATABASE {DATABASE}", db="postgres")
        if sync:
            self.set_sync_standbys("*")

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                  "-o", f"-p {self.port} -c cluster_name={self.name}", "start")

    def stop(self, mode: str = "fast") -> None:
        """mode `immediate` is a crash: no checkpoint, no goodbye to clients or standbys."""
        if self.running():
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def running(self) -> bool:
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def promote(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-w", "-t", "60", "promote")

    def in_recovery(self) -> bool:
        return self.sql("SELECT pg_is_in_recovery()", db="postgres") == "t"

    def set_sync_standbys(self, names: str) -> None:
        """`*`: every commit waits until a standby has flushed it; empty: asynchronous."""
        self.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'", db="postgres")
        self.sql("SELECT pg_reload_conf()", db="postgres")

    def make_standby_of(self, primary: "Node") -> None:
        """A fresh copy of the primary, streaming from it (pg_basebackup -R)."""
        shutil.rmtree(self.data, ignore_errors=True)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-D", self.data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
        self.start()

    def rewind_to_standby_of(self, primary: "Node") -> None:
        """The old primary made a standby of the new one with pg_rewind (which undoes whatever
        it wrote that the new timeline lacks), falling back to a fresh copy if rewind fails."""
        self.stop("immediate")
        # A freshly promoted source records its new timeline in its control file only at its
        # next checkpoint; before that pg_rewind sees one timeline and "no rewind required".
        primary.sql("CHECKPOINT", db="postgres")
        try:
            self._run("pg_rewind", "-D", self.data, f"--source-server=host=127.0.0.1 port={primary.port} "
                      "user=postgres dbname=postgres", "-R", "--no-sync", timeout=300)
        except PgError as e:
            print(f"    pg_rewind failed ({e}); copying the new primary instead", flush=True)
            self.make_standby_of(primary)
            return
        self.start()

    def wait_streaming(self, primary: "Node", timeout: float = 60) -> None:
        """Until this node has replayed everything the primary had written when asked, and the
        primary sees it streaming (a standby that cannot follow the primary's timeline shows as
        streaming for a moment at each retry, but never catches up)."""
        target = primary.sql("SELECT pg_current_wal_lsn()", db="postgres")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = primary.sql(
                f"SELECT state FROM pg_stat_replication WHERE application_name = '{self.name}'",
                db="postgres")
            try:
                caught_up = self.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'", db="postgres") == "t"
            except PgError:
                caught_up = False  # still starting
            if state == "streaming" and caught_up:
                return
            time.sleep(0.1)
        raise PgError(f"{self} has not caught up with {primary} after {timeout:.0f} s (see {self.log})")


def stop_all(work: str) -> None:
    """Crash-stops every cluster under the work folder (what a failed run leaves behind)."""
    for pidfile in glob.glob(os.path.join(work, "pg", "*", "postmaster.pid")):
        data = os.path.dirname(pidfile)
        subprocess.run(as_postgres([os.path.join(bindir(), "pg_ctl"), "-D", data, "-m", "immediate",
                                    "-w", "stop"]), capture_output=True)
