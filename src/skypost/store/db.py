"""Connections and transactions for SQLite and PostgreSQL, on plain DB-API drivers.

The schema is defined with SQLAlchemy Core and migrated with Alembic, but both
are loaded only by `migrate()`: importing SQLAlchemy costs ~150 ms here, more
than the whole budget of `skypost submit`. Queries (queries.py) are plain SQL
that both databases accept; this module adapts the placeholders.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import unquote, urlsplit

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_MAGIC = b"SQLite format 3\x00"
# the newest Alembic revision; a test keeps it equal to the migrations' head
SCHEMA_HEAD = "0009"

# columns whose values are JSON documents / booleans, decoded the same way on both databases
JSON_COLUMNS = frozenset({"document", "args", "include_categories", "exclude_categories", "data", "accounts"})
BOOL_COLUMNS = frozenset({"auto_syndicate", "tried", "enabled"})


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class DatabaseError(RuntimeError):
    pass


def redact_url(url: str) -> str:
    """The URL without its password, fit for an error message."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "(an unparsable URL)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _missing_table(exc: BaseException) -> bool:
    """The error of a query on a table that does not exist (an uninitialised database)."""
    if isinstance(exc, sqlite3.OperationalError):
        return "no such table" in str(exc)
    return type(exc).__name__ == "UndefinedTable"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key, value in out.items():
        if key in JSON_COLUMNS and isinstance(value, (str, bytes)):
            out[key] = json.loads(value)
        elif key in BOOL_COLUMNS and value is not None:
            out[key] = bool(value)
    return out


def encode_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Conn:
    """One connection inside one transaction."""

    def __init__(self, raw: Any, dialect: str, after_commit: list[Callable[[], None]] | None = None):
        self.raw = raw
        self.dialect = dialect
        self.rowcount = 0
        self._after_commit = after_commit if after_commit is not None else []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the outermost transaction has committed (never on rollback):
        wake-ups and listeners must not see data that may still be rolled back."""
        self._after_commit.append(callback)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        if self.dialect == "postgresql":
            sql = _NAMED.sub(r"%(\1)s", sql)
        cur = self.raw.execute(sql, dict(params or {}))
        self.rowcount = cur.rowcount
        return cur

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.dialect == "postgresql":
            sql = _NAMED.sub(r"%(\1)s", sql)
            with self.raw.cursor() as cur:
                cur.executemany(sql, [dict(r) for r in rows])
        else:
            self.raw.executemany(sql, [dict(r) for r in rows])

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        return [decode_row(r) for r in cur.fetchall()]

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        cur = self.execute(sql, params)
        row = cur.fetchone()
        return decode_row(row) if row is not None else None

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        cur = self.execute(sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return next(iter(dict(row).values()))

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"


def _sqlite_dict(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row)}


class Database:
    """Per-thread connections and the one way to run a transaction."""

    def __init__(self, url: str):
        self.url = normalize_url(url)
        self.display_url = redact_url(url)  # for messages: as given, without a password
        self.dialect = "postgresql" if self.url.startswith("postgresql") else "sqlite"
        if self.dialect == "sqlite" and not self.url.startswith("sqlite:"):
            raise DatabaseError(f"unsupported database URL {redact_url(url)!r} "
                                "(use sqlite:///FILE or postgresql://USER@HOST/DB)")
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._sqlite_fd: int | None = None  # the file the first connection opened, for probe()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    # --- connections ------------------------------------------------------------

    def sqlite_path(self) -> str:
        rest = self.url.split(":///", 1)[1] if ":///" in self.url else ""
        rest = rest.split("?", 1)[0]
        return rest or ":memory:"

    def conninfo(self) -> str:
        parts = urlsplit(self.url.replace("postgresql+psycopg://", "postgresql://", 1))
        return parts._replace(path=parts.path).geturl() if parts.path else parts.geturl()

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    def _open(self) -> Any:
        raw: Any
        if self.dialect == "sqlite":
            path = self.sqlite_path()
            try:
                raw = self._open_sqlite(path)
                with self._lock:
                    if path != ":memory:" and self._sqlite_fd is None:
                        self._sqlite_fd = os.open(path, os.O_RDONLY)
            except (sqlite3.Error, OSError) as exc:
                raise DatabaseError(f"cannot open the SQLite database {path}: {_one_line(exc)}") from None
        else:
            import psycopg
            from psycopg.rows import dict_row

            try:
                raw = psycopg.connect(self.conninfo(), autocommit=True, row_factory=dict_row)
            except psycopg.Error as exc:
                raise DatabaseError(f"cannot connect to PostgreSQL at {self.display_url}: "
                                    f"{_one_line(exc)}") from None
        with self._lock:
            self._all.append(raw)
        return raw

    @staticmethod
    def _open_sqlite(path: str) -> sqlite3.Connection:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # it holds encrypted secrets and tokens: owner only; SQLite gives the -wal and
            # -shm files the database file's mode
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        raw = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            raw.row_factory = _sqlite_dict
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute("PRAGMA foreign_keys=ON")
            raw.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error:
            raw.close()
            raise
        return raw

    def _raw(self) -> Any:
        raw = getattr(self._local, "raw", None)
        if raw is None or (self.dialect == "postgresql" and raw.closed):
            raw = self._local.raw = self._open()
        return raw

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Conn]:
        """A write transaction. Used inside another on the same thread, it joins that one:
        its after-commit callbacks then wait for the outermost commit."""
        raw = self._raw()
        if getattr(self._local, "depth", 0):
            if getattr(self._local, "readonly", False):
                raise RuntimeError("a write transaction inside a read-only connect() block")
            yield Conn(raw, self.dialect, self._local.callbacks)
            return
        self._local.depth = 1
        callbacks: list[Callable[[], None]] = []
        self._local.callbacks = callbacks
        try:
            if self.dialect == "sqlite":
                # take the write lock up front: no deadlock on a read-then-write upgrade
                raw.execute("BEGIN IMMEDIATE")
                try:
                    yield Conn(raw, self.dialect, callbacks)
                except BaseException:
                    raw.execute("ROLLBACK")
                    raise
                raw.execute("COMMIT")
            else:
                try:
                    with raw.transaction():
                        yield Conn(raw, self.dialect, callbacks)
                except Exception as exc:
                    if raw.closed or getattr(raw, "broken", False):
                        self._local.raw = None
                    raise exc
        except BaseException:
            callbacks.clear()
            raise
        finally:
            self._local.depth = 0
            self._local.callbacks = None
        for callback in callbacks:
            callback()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Conn]:
        """A read-only transaction: a consistent snapshot that, on SQLite, takes no write lock."""
        raw = self._raw()
        if self.dialect != "sqlite" or self._local.__dict__.get("depth", 0):
            with self.transaction() as conn:
                yield conn
            return
        self._local.depth = 1
        self._local.readonly = True
        self._local.callbacks = []
        try:
            raw.execute("BEGIN")
            try:
                yield Conn(raw, self.dialect, self._local.callbacks)
            finally:
                raw.execute("ROLLBACK")
        finally:
            self._local.depth = 0
            self._local.readonly = False

    def data_version(self) -> int | None:
        """SQLite: a number that changes whenever another connection commits (cheap, no lock)."""
        if self.dialect != "sqlite":
            return None
        return self._raw().execute("PRAGMA data_version").fetchone()["data_version"]

    def server_time(self) -> float:
        """The database server's clock (UNIX seconds). SQLite lives on this host: its clock is ours."""
        if self.dialect != "postgresql":
            return time.time()
        row = self._raw().execute("SELECT EXTRACT(EPOCH FROM clock_timestamp()) AS t").fetchone()
        return float(row["t"])

    def release_thread(self) -> None:
        """Close this thread's connection: threads that end must not leave connections behind."""
        raw = getattr(self._local, "raw", None)
        self._local.raw = None
        if raw is None:
            return
        with self._lock:
            if raw in self._all:
                self._all.remove(raw)
        try:
            raw.close()
        except Exception:  # noqa: BLE001
            pass

    def dispose(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for raw in conns:
            try:
                raw.close()
            except Exception:  # noqa: BLE001
                pass
        self._close_file()  # after the connections: nothing of ours holds a lock any more
        self._local = threading.local()

    # --- schema -------------------------------------------------------------------

    def schema_revision(self) -> str | None:
        """The stored revision, read without loading Alembic; None if uninitialised.

        DatabaseError when the database cannot answer (gone, refused, not a database)."""
        try:
            with self.connect() as conn:
                return conn.scalar("SELECT version_num FROM alembic_version")
        except self._driver_errors() as exc:
            if _missing_table(exc):
                return None
            raise DatabaseError(f"the database cannot be read: {_one_line(exc)}") from None

    def probe(self) -> str | None:
        """Answer `SELECT 1` and return the schema revision; DatabaseError when that fails."""
        if self.dialect == "sqlite" and self.sqlite_path() != ":memory:":
            self._probe_file(self.sqlite_path())
        try:
            with self.connect() as conn:
                conn.scalar("SELECT 1")
        except self._driver_errors() as exc:
            raise DatabaseError(f"the database does not answer: {_one_line(exc)}") from None
        return self.schema_revision()

    def _probe_file(self, path: str) -> None:
        """Open connections keep reading a deleted or replaced file, and page 1 from their WAL:
        look at the file itself, through a descriptor kept open for our lifetime (closing any
        descriptor of it drops this process's SQLite locks, and another process may then
        delete the WAL under our feet)."""
        self._raw()
        if self._sqlite_fd is None:
            raise DatabaseError(f"the database file {path} is not open")
        try:
            replaced = os.stat(path).st_ino != os.fstat(self._sqlite_fd).st_ino
            header = os.pread(self._sqlite_fd, len(SQLITE_MAGIC), 0)
        except OSError as exc:
            raise DatabaseError(f"the database file {path} cannot be read: {_one_line(exc)}") from None
        if replaced:
            raise DatabaseError(f"the database file {path} was removed or replaced while skypost ran")
        if header != SQLITE_MAGIC:
            raise DatabaseError(f"the database file {path} is not a SQLite database")

    def _close_file(self) -> None:
        fd, self._sqlite_fd = self._sqlite_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (loads SQLAlchemy and Alembic)."""
        import sqlalchemy as sa
        from alembic import command
        from alembic.util import CommandError

        self._raw()  # a clear DatabaseError (and a 0600 file) before Alembic opens it
        if self.dialect == "sqlite":
            path = self.sqlite_path()
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
        else:
            engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                if self.dialect == "postgresql":
                    # one migrator at a time when many hosts start together
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7201522)")
                cfg = alembic_config(self.url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except CommandError as exc:  # e.g. a schema written by a newer skypost
            raise DatabaseError(f"cannot upgrade the database schema to {SCHEMA_HEAD}: "
                                f"{_one_line(exc)}") from None
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(f"cannot upgrade the database schema: {_one_line(exc.orig or exc)}") from None
        finally:
            engine.dispose()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", unquote(url).replace("%", "%%"))
    return cfg
