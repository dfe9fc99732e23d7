"""Real local database servers for the tests: PostgreSQL and MariaDB (MySQL), each started on a free 127.0.0.1 port
in a temporary data directory and stopped afterwards, plus `load_csv` to fill a table from a CSV file quickly.
Never imported by production code.

    server = start_postgres(str(tmp_path))       # or start_mysql(...)
    server.url(driver=False)                     # 'postgresql://beam@127.0.0.1:PORT/ml' (what a user types)
    server.url(with_password=True)               # 'postgresql+psycopg2://beam:PASSWORD@127.0.0.1:PORT/ml'
    load_csv(server, "penguins", csv_path, {"species": "string", "year": "int", ...})
    server.stop()                                # also a context manager; atexit stops forgotten servers

Both servers accept TCP connections only from 127.0.0.1, with real password authentication for the user `beam`
(PostgreSQL: scram-sha-256; MariaDB: mysql_native_password), who owns/has all rights on the database `ml`. Durability
is switched off (fsync etc.) for speed. Binaries come from the Debian packages `postgresql` and `mariadb-server`.

Traps handled here:
- PostgreSQL refuses to run as root: as root, initdb/postgres run as the `postgres` system user (else `nobody`), and
  their directory must be reachable by that user; pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700), so
  the data then goes to a private mkdtemp directory under /tmp (linked from base_dir, removed by stop()).
- Unix socket paths are limited to ~107 bytes: sockets live in that short private directory too when needed.
- PostgreSQL backends call setsid(), so killing the postmaster's process group does not reach them; stop() sends the
  fast-shutdown signal (SIGINT: SIGTERM is "smart" shutdown, which waits for every client to disconnect) and, if
  that times out, SIGKILLs the postmaster and all its descendants.
- Servers get PR_SET_PDEATHSIG: when the test process dies (even by SIGKILL) they shut down too; atexit stops the
  rest. Only a crash leaves a /tmp/beam-postgres-* directory behind.
- MariaDB reads /etc/mysql/*.cnf and uses /run/mysqld/mysqld.sock unless told otherwise: --no-defaults everywhere.
  It runs as root only with an explicit --user=root. mariadb-install-db's default root authentication is
  unix_socket (bound to the OS user name); 'normal' gives a password-less root@localhost, reachable only through the
  socket in our 0700 directory, which is used to create 'beam'.
- LOAD DATA LOCAL INFILE turns bad values into warnings even in strict mode, so load_csv checks SHOW WARNINGS.
"""
from __future__ import annotations

import atexit
import dataclasses
import glob
import grp
import io
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.parse
from typing import Optional

USER = "beam"
DATABASE = "ml"
# The penguins table the `penguin_databases` fixture loads (plus an `id` column).
PENGUIN_DB_COLUMNS = "species, island, bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, sex, year"
START_TIMEOUT = 60.0
SQL_TYPES = {  # load_csv column types -> (PostgreSQL, MariaDB) SQL types
    "int": ("BIGINT", "BIGINT"),
    "float": ("DOUBLE PRECISION", "DOUBLE"),
    "string": ("TEXT", "TEXT"),
}
NULL_VALUES = ("", "NA")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; PostgreSQL appends "/.s.PGSQL.NNNNN"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# Processes

def _children(pid: int) -> list[int]:
    """All descendants of `pid` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Proc:
    """A server process in its own session, output to `<logdir>/<name>.log`; stop() sends `stop_signal`, then
    SIGKILLs the process group and every remaining descendant."""

    def __init__(self, name: str, argv: list[str], logdir: str, env: Optional[dict] = None, run_as=None,
                 cwd: Optional[str] = None, stop_signal: int = signal.SIGTERM):
        self.name, self.stop_signal = name, stop_signal
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=_die_with_parent(stop_signal), **_popen_user(run_as))

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, self.stop_signal)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                kids = _children(self.p.pid)
                for pid in [self.p.pid] + kids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.p.wait()
                deadline = time.time() + 5
                while time.time() < deadline and any(_running(pid) for pid in kids):
                    time.sleep(0.05)
        try:
            os.killpg(self.p.pid, signal.SIGKILL)  # anything left in the group (nothing, normally)
        except (ProcessLookupError, PermissionError):
            pass
        if not self.log.closed:
            self.log.close()

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        return _tail(self.log_path, lines)


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _die_with_parent(sig: int):
    """A preexec_fn making the child receive `sig` when this process dies (even by SIGKILL), so a crashed test run
    leaves no server behind. Only from the main thread: the signal fires when the *thread* that forked exits."""
    import ctypes
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec():  # runs after the switch of user, which would clear the setting
        prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died already
            os.kill(os.getpid(), sig)
    return preexec


def _popen_user(run_as) -> dict:
    """Popen arguments dropping root privileges to `run_as` (a pwd entry); nothing when not root."""
    if run_as is None or os.geteuid() != 0:
        return {}
    return {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}


def _run(name: str, argv: list[str], logdir: str, env=None, run_as=None, cwd=None, timeout=120) -> None:
    """Runs a setup command to completion; its output goes to `<logdir>/<name>.log`."""
    log_path = os.path.join(logdir, f"{name}.log")
    with open(log_path, "w") as log:
        r = subprocess.run(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           timeout=timeout, **_popen_user(run_as))
    if r.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed (rc={r.returncode}); {log_path} ends with:\n{_tail(log_path)}")


def _reachable(path: str, user) -> bool:
    """Whether `user` (pwd entry) may traverse every directory down to `path` (root may always)."""
    if user.pw_uid == 0:
        return True
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    path = os.path.abspath(path)
    while True:
        st = os.stat(path)
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _unique_name(base_dir: str, name: str) -> str:
    """`name`, or `name-2`, `name-3`... when another server of the same kind already used base_dir."""
    n, candidate = 1, name
    while any(os.path.lexists(os.path.join(base_dir, candidate + suffix)) for suffix in ("", ".log")):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _private_dir(base_dir: str, name: str, user) -> tuple[str, bool]:
    """A directory owned by `user` (mode 0700) for the server's data and sockets: `<base_dir>/<name>` when `user`
    can reach it and a socket path inside stays short, else a fresh /tmp/beam-<name>-XXXX (linked from base_dir as
    `<name>`). Returns (path, is_temporary)."""
    wanted = os.path.join(os.path.abspath(base_dir), name)
    if _reachable(base_dir, user) and len(wanted) + 20 < _SOCKET_PATH_MAX and not os.path.exists(wanted):
        os.mkdir(wanted, 0o700)
        path, temporary = wanted, False
    else:
        path, temporary = tempfile.mkdtemp(prefix=f"beam-{name}-", dir="/tmp"), True
        if not os.path.lexists(wanted):
            os.symlink(path, wanted)
    if os.geteuid() == 0 and user.pw_uid != 0:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path, temporary


def _wait(connect, proc: Proc, what: str, timeout: float = START_TIMEOUT):
    """Calls connect() until it returns without an exception; fails early when the server process exits."""
    t0, last = time.time(), None
    while time.time() - t0 < timeout:
        if not proc.alive():
            raise RuntimeError(f"{what} exited early (rc={proc.p.returncode}); {proc.log_path} ends with:\n"
                               f"{proc.tail()}")
        try:
            return connect()
        except Exception as e:  # noqa: BLE001 - not ready yet
            last = e
            time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last}); {proc.log_path} ends with:\n"
                       f"{proc.tail()}")


# ---------------------------------------------------------------------------------------------------------------
# Servers

_LIVE: list["Server"] = []


@dataclasses.dataclass
class Server:
    engine: str  # 'postgresql' | 'mysql'
    host: str
    port: int
    user: str
    password: str
    database: str
    data_dir: str = ""
    log_path: str = ""
    startup_seconds: float = 0.0
    _proc: Optional[Proc] = dataclasses.field(default=None, repr=False)
    _temp_dir: Optional[str] = dataclasses.field(default=None, repr=False)

    DRIVERS = {"postgresql": "psycopg2", "mysql": "pymysql"}

    def url(self, with_password: bool = False, driver: bool = True) -> str:
        """SQLAlchemy URL, e.g. 'postgresql+psycopg2://beam@127.0.0.1:PORT/ml' or, with driver=False, the plain
        'postgresql://beam@127.0.0.1:PORT/ml' (or 'mysql://...') a user types. The password is only included when
        asked for."""
        scheme = f"{self.engine}+{self.DRIVERS[self.engine]}" if driver else self.engine
        cred = urllib.parse.quote(self.user, safe="")
        if with_password:
            cred += ":" + urllib.parse.quote(self.password, safe="")
        return f"{scheme}://{cred}@{self.host}:{self.port}/{self.database}"

    def create_engine(self, password: Optional[str] = None, **kwargs):
        """A SQLAlchemy engine for this server (another password, e.g. a wrong one, when given)."""
        import sqlalchemy
        url = sqlalchemy.engine.make_url(self.url()).set(password=self.password if password is None else password)
        return sqlalchemy.create_engine(url, **kwargs)

    @property
    def pid(self) -> Optional[int]:
        return self._proc.p.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def _server_user(preferred: str):
    """The account to run a server as: ourselves unless root; as root `preferred`, else `nobody`."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in (preferred, "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise RuntimeError(f"running as root but neither a '{preferred}' nor a 'nobody' user exists to run the server")


def postgres_bin_dir() -> str:
    """Directory with initdb/postgres: $PG_BIN, else the newest /usr/lib/postgresql/<version>/bin, else $PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[-2].split(".")],
                         reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    for d in candidates:
        if d and all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "postgres")):
            return d
    raise RuntimeError("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or on "
                       "PATH: install the Debian package `postgresql` (apt-get install -y postgresql), or set PG_BIN")


def start_postgres(base_dir: str, timeout: float = START_TIMEOUT) -> Server:
    """Starts a PostgreSQL server on a free 127.0.0.1 port with data under `base_dir` (logs: base_dir/postgres*.log);
    user `beam` (random password, scram-sha-256) owns database `ml`."""
    bindir = postgres_bin_dir()
    import psycopg2  # noqa: F401 - fail before starting anything when the client library is missing
    t0 = time.time()
    os.makedirs(base_dir, exist_ok=True)
    run_as = _server_user("postgres")
    name = _unique_name(base_dir, "postgres")
    home, temporary = _private_dir(base_dir, name, run_as)
    data = os.path.join(home, "data")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
           "TZ": "UTC"}
    server = Server("postgresql", "127.0.0.1", 0, USER, secrets.token_urlsafe(16), DATABASE, data_dir=data,
                    log_path=os.path.join(base_dir, f"{name}.log"), _temp_dir=home if temporary else None)
    try:
        # Local (unix socket, in the 0700 `home`) connections are trusted: only root and run_as can reach them.
        _run(f"{name}-initdb", [f"{bindir}/initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C",
                                 "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"],
             base_dir, env=env, run_as=run_as, cwd=home)
        server.port = free_port()
        server._proc = Proc(name, [
            f"{bindir}/postgres", "-D", data, "-h", "127.0.0.1", "-p", str(server.port), "-k", home,
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "shared_buffers=128MB", "-c", "max_connections=50", "-c", "max_wal_size=2GB",
            "-c", "wal_level=minimal", "-c", "max_wal_senders=0",  # COPY into a table created in the same
            # transaction then writes no WAL
            "-c", "password_encryption=scram-sha-256", "-c", "log_min_messages=warning",
            "-c", f"cluster_name=beam-test-{server.port}",  # in every backend's `ps` title
        ], base_dir, env=env, run_as=run_as, cwd=home, stop_signal=signal.SIGINT)  # SIGINT = fast shutdown
        _LIVE.append(server)

        import psycopg2
        def admin():
            return psycopg2.connect(host=home, port=server.port, user="postgres", dbname="postgres", connect_timeout=5)
        conn = _wait(admin, server._proc, "postgres", timeout)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE ROLE {USER} LOGIN PASSWORD %s", (server.password,))
                cur.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        finally:
            conn.close()
        # The real thing: password login over TCP.
        psycopg2.connect(host=server.host, port=server.port, user=server.user, password=server.password,
                         dbname=server.database, connect_timeout=10).close()
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.time() - t0
    return server


def mysql_binaries() -> tuple[str, str]:
    """(server, install-db) binaries of MariaDB: mariadbd/mysqld and mariadb-install-db/mysql_install_db."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"])
    server = shutil.which("mariadbd", path=path) or shutil.which("mysqld", path=path)
    install = shutil.which("mariadb-install-db", path=path) or shutil.which("mysql_install_db", path=path)
    if not server or not install:
        raise RuntimeError("MariaDB server binaries (mariadbd/mysqld and mariadb-install-db/mysql_install_db) not "
                           "found: install the Debian package `mariadb-server` (apt-get install -y mariadb-server)")
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    if "mariadb" not in version.lower():
        raise RuntimeError(f"{server} is not MariaDB ({version.strip()}); only MariaDB is supported: install the "
                           "Debian package `mariadb-server`")
    return server, install


def start_mysql(base_dir: str, timeout: float = START_TIMEOUT) -> Server:
    """Starts a MariaDB server on a free 127.0.0.1 port with data under `base_dir` (logs: base_dir/mariadb*.log);
    user 'beam'@'%' (random password, mysql_native_password) has all rights on database `ml`."""
    mariadbd, install_db = mysql_binaries()
    import pymysql  # noqa: F401 - fail before starting anything when the client library is missing
    t0 = time.time()
    os.makedirs(base_dir, exist_ok=True)
    # mariadbd may run as root when told so explicitly (--user=root): no directory permission trouble then.
    run_as = pwd.getpwuid(os.geteuid())
    name = _unique_name(base_dir, "mariadb")
    home, temporary = _private_dir(base_dir, name, run_as)
    data, sock = os.path.join(home, "data"), os.path.join(home, "mysqld.sock")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    server = Server("mysql", "127.0.0.1", 0, USER, secrets.token_urlsafe(16), DATABASE, data_dir=data,
                    log_path=os.path.join(base_dir, f"{name}.log"), _temp_dir=home if temporary else None)
    common = ["--no-defaults", f"--user={run_as.pw_name}", f"--datadir={data}", f"--socket={sock}",
              f"--tmpdir={home}", f"--pid-file={home}/mysqld.pid", "--skip-name-resolve",
              "--innodb-use-native-aio=0",  # io_uring/libaio may be blocked in containers
              "--innodb-buffer-pool-size=256M", "--innodb-log-file-size=256M",
              "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--innodb-flush-method=nosync"]
    try:
        # 'normal': root@localhost without password, reachable only through the socket in the 0700 `home`.
        _run(f"{name}-install-db", [install_db, *common, "--auth-root-authentication-method=normal",
                                    "--skip-test-db"], base_dir, env=env, cwd=home)
        server.port = free_port()
        server._proc = Proc(name, [
            mariadbd, *common, f"--port={server.port}", "--bind-address=127.0.0.1", "--local-infile=1",
            "--skip-log-bin", "--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin",
            "--max-allowed-packet=64M", "--log-warnings=1",
        ], base_dir, env=env, cwd=home)
        _LIVE.append(server)

        import pymysql
        def admin():
            return pymysql.connect(unix_socket=sock, user="root", connect_timeout=5, autocommit=True)
        conn = _wait(admin, server._proc, "mariadbd", timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
                for host in ("%", "127.0.0.1", "localhost"):  # explicit hosts: no anonymous ''@host rule can win
                    h = host.replace("%", "%%")  # pymysql interpolates with %
                    cur.execute(f"CREATE USER '{USER}'@'{h}' IDENTIFIED BY %s", (server.password,))
                    cur.execute(f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{USER}'@'{host}'")
        finally:
            conn.close()
        pymysql.connect(host=server.host, port=server.port, user=server.user, password=server.password,
                        database=server.database, connect_timeout=10).close()
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.time() - t0
    return server


# ---------------------------------------------------------------------------------------------------------------
# Loading data

def _prefetched(items, depth: int = 2):
    """Yields from `items`, which a background thread runs up to `depth` items ahead (pyarrow and the database
    drivers release the GIL, so parsing overlaps sending). Exceptions are re-raised in the caller."""
    import queue
    import threading
    q: "queue.Queue" = queue.Queue(depth)
    done, stop = object(), threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        pass
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((done, e))

    thread = threading.Thread(target=produce, name="load_csv-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _mysql_tsv(batch, first_id: int) -> bytes:
    """A record batch as MariaDB's default LOAD DATA text (ids from `first_id`); NaN/inf floats become NULL."""
    import pyarrow as pa
    import pyarrow.compute as pc
    cols = [pc.cast(pa.array(range(first_id, first_id + batch.num_rows), pa.int64()), pa.string())]
    for col in batch.columns:
        if pa.types.is_floating(col.type):
            col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, col.type))
        if pa.types.is_string(col.type):
            for old, new in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
                col = pc.replace_substring(col, old, new)
        cols.append(pc.fill_null(pc.cast(col, pa.string()), "\\N"))
    lines = pc.binary_join_element_wise(*cols, "\t")
    return ("\n".join(lines.to_pylist()) + "\n").encode("utf-8") if len(lines) else b""


def load_csv(server: Server, table: str, csv_path: str, column_types: dict[str, str]) -> int:
    """Creates `table` (dropped first if it exists) with `id BIGINT PRIMARY KEY` (1..N in file order) and the CSV's
    columns ('int' -> BIGINT, 'float' -> DOUBLE PRECISION/DOUBLE, 'string' -> TEXT; columns missing from
    `column_types` are 'string'), then loads the file: empty (unquoted) cells and 'NA' become NULL. The CSV is parsed
    by pyarrow in blocks (a value that does not parse as its type raises pyarrow.ArrowInvalid); PostgreSQL loads
    them through COPY FROM STDIN, MariaDB through LOAD DATA LOCAL INFILE (NaN/inf, which MariaDB cannot store,
    become NULL). One transaction (on MariaDB, CREATE TABLE commits implicitly: a failed load leaves an empty
    table). Returns the row count."""
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    with open(csv_path, "rb") as f:
        header = f.readline()
    import csv
    columns = next(csv.reader([header.decode("utf-8-sig").rstrip("\r\n")]))
    unknown = {t for t in column_types.values() if t not in SQL_TYPES}
    if unknown:
        raise ValueError(f"unknown column types {sorted(unknown)}; use {sorted(SQL_TYPES)}")
    if "id" in columns:
        raise ValueError(f"{csv_path} already has an 'id' column")
    types = [column_types.get(c, "string") for c in columns]
    arrow_types = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
    reader = pa_csv.open_csv(
        csv_path,
        read_options=pa_csv.ReadOptions(block_size=4 << 20, encoding="utf8"),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: arrow_types[t] for c, t in zip(columns, types)}, null_values=list(NULL_VALUES),
            strings_can_be_null=True, quoted_strings_can_be_null=False))

    engine = server.create_engine(connect_args={"local_infile": True} if server.engine == "mysql" else {})
    quote = engine.dialect.identifier_preparer.quote
    which = 0 if server.engine == "postgresql" else 1
    qtable = quote(table)
    ddl = ", ".join([f"{quote('id')} BIGINT NOT NULL"] +
                    [f"{quote(c)} {SQL_TYPES[t][which]}" for c, t in zip(columns, types)] +
                    ([] if server.engine == "postgresql" else [f"PRIMARY KEY ({quote('id')})"]))  # InnoDB clusters on it
    raw = engine.raw_connection()
    n = 0
    try:
        cur = raw.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {qtable}")
        cur.execute(f"CREATE TABLE {qtable} ({ddl})")
        collist = ", ".join(quote(c) for c in ["id"] + columns)
        if server.engine == "postgresql":
            copy = f"COPY {qtable} ({collist}) FROM STDIN WITH (FORMAT csv)"
            options = pa_csv.WriteOptions(include_header=False)

            def csv_chunks():
                start = 1
                for batch in reader:
                    ids = pa.array(range(start, start + batch.num_rows), pa.int64())
                    start += batch.num_rows
                    buf = io.BytesIO()
                    # Strings are always quoted ("" stays an empty string); nulls are unquoted-empty = NULL.
                    pa_csv.write_csv(pa.RecordBatch.from_arrays([ids, *batch.columns], ["id", *columns]), buf,
                                     options)
                    buf.seek(0)
                    yield batch.num_rows, buf

            for rows, buf in _prefetched(csv_chunks()):  # parse the next block while the server eats this one
                cur.copy_expert(copy, buf, size=1 << 20)
                n += rows
            cur.execute(f"ALTER TABLE {qtable} ADD PRIMARY KEY ({quote('id')})")  # one index build, after the data
        else:
            # LOAD DATA LOCAL INFILE (PyMySQL sends the file; the server runs with --local-infile=1), from temporary
            # files in MariaDB's default text format: tab-separated, backslash escapes, \\N for NULL.
            load = (f"LOAD DATA LOCAL INFILE %s INTO TABLE {qtable} CHARACTER SET utf8mb4 "
                    f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({collist})")
            with tempfile.TemporaryDirectory(prefix="beam-load-") as tmp:
                def tsv_files():
                    start = 1
                    for i, batch in enumerate(reader):
                        path = os.path.join(tmp, f"{i % 4}.tsv")  # the reader runs at most 3 files ahead
                        with open(path, "wb") as f:
                            f.write(_mysql_tsv(batch, start))
                        start += batch.num_rows
                        yield batch.num_rows, path

                for rows, path in _prefetched(tsv_files()):
                    cur.execute(load, (path,))
                    loaded = cur.rowcount
                    cur.execute("SHOW WARNINGS LIMIT 5")  # with LOCAL, bad values are only warnings
                    warnings = cur.fetchall()
                    if loaded != rows or warnings:
                        raise RuntimeError(f"LOAD DATA of {csv_path} into {table} loaded {loaded} of {rows} rows; "
                                           f"warnings: {warnings}")
                    n += rows
        raw.commit()
        cur.close()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
        engine.dispose()
    return n
