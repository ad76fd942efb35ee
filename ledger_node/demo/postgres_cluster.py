"""A throwaway PostgreSQL cluster for the tests and the benches: ``initdb`` and ``pg_ctl``
in a temporary folder, listening on 127.0.0.1 on a random free port, trust authentication
on 127.0.0.1 only, stopped (``pg_ctl stop -m fast``) and removed at the end. The tests'
cluster does not fsync (speed); a bench's is ``durable`` (fsync on, as a deployment runs
it, so its figures compare with SQLite's ``synchronous=FULL``).

Run as root, the server runs as the ``postgres`` user (PostgreSQL refuses root) through
``runuser``; otherwise as the current user. Each test gets its own database, created from
one template so tests stay independent.

Where no PostgreSQL is installed the PostgreSQL tests are skipped with the reason, unless
``JL_REQUIRE_POSTGRES=1`` (``./dev.sh test`` and CI set it), when they fail instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ledger_node.demo.localsite import free_port

REQUIRE_ENV: Final = "JL_REQUIRE_POSTGRES"
_START_TIMEOUT_S: Final = 60


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding ``initdb`` (or ``PG_BIN``), if any."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresCluster:
    """A running throwaway cluster (see the module docstring)."""

    bin_dir: Path
    folder: Path
    port: int
    user: str
    durable: bool = False
    """Whether the server fsyncs its commits (``fsync=on``: benches) or not (tests)."""
    _databases: int = 0

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this cluster (trust authentication: no password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=_START_TIMEOUT_S, cwd=self.folder)

    def start(self) -> None:
        """``initdb`` and ``pg_ctl start``; raises ``RuntimeError`` with their output."""
        done = self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust",
                         "-E", "UTF8", "--no-sync")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.folder} "
                   + ("-c shared_buffers=256MB " if self.durable else
                      "-c fsync=off -c shared_buffers=32MB ")
                   + "-c max_connections=200")
        done = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                         str(self.folder / "server.log"), "-w", "-t",
                         str(_START_TIMEOUT_S), "start")
        if done.returncode:
            log = (self.folder / "server.log")
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}"
                               f"{log.read_text() if log.exists() else ''}")

    def server_pid(self) -> int | None:
        """The server's process id (its postmaster), from ``postmaster.pid``; ``None`` if
        it is not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then remove the folder."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh empty database's URL (``CREATE DATABASE`` from ``template0``)."""
        import psycopg

        self._databases += 1
        name = f"jl_{os.getpid()}_{self._databases}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0".encode())
        return self.url(name)


def start_cluster(*, durable: bool = False) -> PostgresCluster:
    """A started cluster (``durable``: fsync on); ``FileNotFoundError`` when PostgreSQL is
    not installed."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/"
                                "initdb; set PG_BIN, or run ./dev.sh test as root)")
    folder = Path(tempfile.mkdtemp(prefix="jl-pg-"))
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o700)
    cluster = PostgresCluster(bin_dir, folder, free_port(), user, durable)
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return cluster


class StoreLocations:
    """Where a test's regulator stores go on one backend: ``locations(tmp, name)`` is the
    SQLite file ``tmp / name``, or on PostgreSQL a database made for ``(tmp, name)`` on
    first use (the same arguments give the same database again, so a restarted node
    resumes on its store)."""

    def __init__(self, backend: str, cluster: PostgresCluster | None) -> None:
        """``cluster`` is needed for the ``postgresql`` backend."""
        self.backend = backend
        self._cluster = cluster
        self._made: dict[tuple[Path, str], str] = {}

    def __call__(self, tmp: Path, name: str) -> Path | str:
        """The location of store ``name`` of a test working in ``tmp``."""
        if self._cluster is None:
            return tmp / name
        key = (tmp, name)
        if key not in self._made:
            self._made[key] = self._cluster.new_database()
        return self._made[key]
