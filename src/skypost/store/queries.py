"""Every SQL statement skypost runs, in SQL that SQLite and PostgreSQL both accept
(`:name` placeholders; db.Conn adapts them). Each function takes an open
connection, so callers decide what shares a transaction."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from skypost.models import FINISHED_DELIVERY

from .db import JSON_COLUMNS, Conn, encode_json

Row = dict[str, Any]

_FINISHED = "('" + "','".join(FINISHED_DELIVERY) + "')"


def in_list(prefix: str, values: Iterable[Any], params: dict[str, Any]) -> str:
    """`(:p0, :p1, …)` for an IN list, filling params."""
    names = []
    for n, value in enumerate(values):
        params[f"{prefix}{n}"] = value
        names.append(f":{prefix}{n}")
    return "(" + (", ".join(names) or "NULL") + ")"


def _encode(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: encode_json(v) if k in JSON_COLUMNS and v is not None else v for k, v in values.items()}


def _insert(conn: Conn, table: str, values: Mapping[str, Any], returning: str | None = None) -> Any:
    cols = list(values)
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
    if returning:
        return conn.scalar(sql + f" RETURNING {returning}", _encode(values))
    conn.execute(sql, _encode(values))
    return None


def _update(conn: Conn, table: str, key: str, key_value: Any, values: Mapping[str, Any]) -> int:
    if not values:
        return 0
    sets = ", ".join(f'"{c}" = :v_{c}' for c in values)
    params = {f"v_{c}": v for c, v in _encode(values).items()}
    params["k"] = key_value
    conn.execute(f"UPDATE {table} SET {sets} WHERE {key} = :k", params)
    return conn.rowcount


def _upsert(conn: Conn, table: str, values: Mapping[str, Any], keys: Sequence[str],
            defaults: Mapping[str, Any] | None = None) -> None:
    """Update the row named by `keys`, or insert it with `defaults` for the columns not given.

    Not INSERT … ON CONFLICT DO UPDATE: both databases check NOT NULL on the proposed row
    first, so a partial update of an existing row would fail."""
    changes = {c: v for c, v in values.items() if c not in keys}
    if changes:
        sets = ", ".join(f'"{c}" = :v_{c}' for c in changes)
        params = {f"v_{c}": v for c, v in _encode(changes).items()}
        params.update({f"k_{c}": values[c] for c in keys})
        where = " AND ".join(f'"{c}" = :k_{c}' for c in keys)
        conn.execute(f"UPDATE {table} SET {sets} WHERE {where}", params)
        if conn.rowcount:
            return
    row = {**(defaults or {}), **values}
    cols = list(row)
    quoted = ", ".join(f'"{c}"' for c in cols)
    conn.execute(
        f"INSERT INTO {table} ({quoted}) VALUES ({', '.join(':' + c for c in cols)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO NOTHING",
        _encode(row),
    )
    if not conn.rowcount and changes:  # another transaction inserted it meanwhile
        _upsert(conn, table, values, keys)


# --- settings -----------------------------------------------------------------

def get_setting(conn: Conn, key: str) -> str | None:
    return conn.scalar("SELECT value FROM settings WHERE key = :key", {"key": key})


def set_setting(conn: Conn, key: str, value: str) -> None:
    _upsert(conn, "settings", {"key": key, "value": value}, ["key"])


def insert_setting_if_missing(conn: Conn, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings (key, value) VALUES (:key, :value) ON CONFLICT (key) DO NOTHING",
                 {"key": key, "value": value})


# --- accounts -----------------------------------------------------------------

def insert_account(conn: Conn, **values: Any) -> int:
    return _insert(conn, "accounts", values, returning="id")


def update_account(conn: Conn, account_id: int, **values: Any) -> None:
    _update(conn, "accounts", "id", account_id, values)


def delete_account(conn: Conn, account_id: int) -> None:
    conn.execute("DELETE FROM accounts WHERE id = :id", {"id": account_id})


def account_by_handle(conn: Conn, handle: str) -> Row | None:
    return conn.one("SELECT * FROM accounts WHERE handle = :h", {"h": handle})


def account_by_id(conn: Conn, account_id: int) -> Row | None:
    return conn.one("SELECT * FROM accounts WHERE id = :id", {"id": account_id})


def list_accounts(conn: Conn) -> list[Row]:
    return conn.all("SELECT * FROM accounts ORDER BY id")


# --- posts and deliveries -------------------------------------------------------

def post_by_id(conn: Conn, post_id: str) -> Row | None:
    return conn.one("SELECT * FROM posts WHERE post_id = :id", {"id": post_id})


def post_by_seq(conn: Conn, seq: int) -> Row | None:
    return conn.one("SELECT * FROM posts WHERE seq = :seq", {"seq": seq})


def insert_post(conn: Conn, **values: Any) -> int:
    return _insert(conn, "posts", values, returning="seq")


def set_post_status(conn: Conn, seq: int, status: str, reason: str | None, now: float) -> None:
    _update(conn, "posts", "seq", seq, {"status": status, "reason": reason, "updated_at": now})


def list_posts(conn: Conn, *, status: str | Sequence[str] | None = None, limit: int = 50,
               before_seq: int | None = None) -> list[Row]:
    where, params = ["1 = 1"], {"limit": limit}
    if status:
        where.append(f"status IN {in_list('st', [status] if isinstance(status, str) else status, params)}")
    if before_seq is not None:
        where.append("seq < :before")
        params["before"] = before_seq
    return conn.all(f"SELECT * FROM posts WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT :limit", params)


def count_posts_by_status(conn: Conn) -> dict[str, int]:
    return {r["status"]: r["n"] for r in conn.all("SELECT status, COUNT(*) AS n FROM posts GROUP BY status")}


def insert_deliveries(conn: Conn, rows: list[dict[str, Any]]) -> None:
    if rows:
        cols = list(rows[0])
        conn.executemany(
            f"INSERT INTO deliveries ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})", rows
        )


def deliveries_for_posts(conn: Conn, seqs: Iterable[int]) -> list[Row]:
    params: dict[str, Any] = {}
    placeholders = in_list("s", seqs, params)
    if not params:
        return []
    return conn.all(f"SELECT * FROM deliveries WHERE post_seq IN {placeholders} ORDER BY post_seq, position", params)


def delivery_by_id(conn: Conn, delivery_id: int) -> Row | None:
    return conn.one("SELECT * FROM deliveries WHERE id = :id", {"id": delivery_id})


def update_delivery(conn: Conn, delivery_id: int, **values: Any) -> None:
    _update(conn, "deliveries", "id", delivery_id, values)


def earlier_unfinished_delivery(conn: Conn, account_id: int, post_seq: int) -> Row | None:
    """The oldest unfinished delivery to the same account from an earlier post (rule 4)."""
    return conn.one(
        f"SELECT * FROM deliveries WHERE account_id = :a AND post_seq < :s AND status NOT IN {_FINISHED} "
        "ORDER BY post_seq LIMIT 1",
        {"a": account_id, "s": post_seq},
    )


def unfinished_deliveries_of_account(conn: Conn, account_id: int) -> list[Row]:
    return conn.all(f"SELECT * FROM deliveries WHERE account_id = :a AND status NOT IN {_FINISHED}",
                    {"a": account_id})


def failed_deliveries_of_account(conn: Conn, account_id: int, error_like: str | None = None) -> list[Row]:
    sql = "SELECT * FROM deliveries WHERE account_id = :a AND status = 'failed'"
    params: dict[str, Any] = {"a": account_id}
    if error_like:
        sql += " AND error LIKE :like"
        params["like"] = error_like
    return conn.all(sql, params)


def count_deliveries_by_status(conn: Conn) -> dict[str, int]:
    return {r["status"]: r["n"] for r in conn.all("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")}


# --- jobs -----------------------------------------------------------------------

JOBS_CHANNEL = "skypost_jobs"


def notify_jobs(conn: Conn) -> None:
    """Wake idle workers on other hosts (PostgreSQL NOTIFY, delivered at commit)."""
    if conn.is_postgres:
        conn.execute(f"NOTIFY {JOBS_CHANNEL}")


def insert_job(conn: Conn, *, kind: str, args: dict[str, Any], run_at: float, now: float,
               post_seq: int | None = None) -> int:
    job_id = _insert(conn, "jobs", {"kind": kind, "args": args, "post_seq": post_seq, "status": "todo",
                                    "run_at": run_at, "attempts": 0, "created_at": now, "updated_at": now},
                     returning="id")
    if run_at <= now:
        notify_jobs(conn)
    return job_id


def job_for_post(conn: Conn, post_seq: int, kind: str = "syndicate") -> Row | None:
    return conn.one("SELECT * FROM jobs WHERE post_seq = :s AND kind = :k ORDER BY id DESC LIMIT 1",
                    {"s": post_seq, "k": kind})


# a todo job that is due, or a claimed job whose worker stopped renewing its lease
_DUE = "((status = 'todo' AND run_at <= :now) OR (status = 'doing' AND lease_expires_at < :now))"


def claim_job(conn: Conn, *, owner: str, now: float, lease: float,
              kinds: Sequence[str] | None = None) -> Row | None:
    """Atomically take the next due job (SKIP LOCKED on PostgreSQL, the write lock on SQLite)."""
    params: dict[str, Any] = {"now": now, "owner": owner, "until": now + lease}
    kind_filter = f" AND kind IN {in_list('k', kinds, params)}" if kinds else ""
    lock = " FOR UPDATE SKIP LOCKED" if conn.is_postgres else ""
    return conn.one(
        "UPDATE jobs SET status = 'doing', lease_owner = :owner, lease_expires_at = :until, "
        "attempts = attempts + 1, updated_at = :now "
        f"WHERE id = (SELECT id FROM jobs WHERE {_DUE}{kind_filter} ORDER BY run_at, id LIMIT 1{lock}) "
        "RETURNING *",
        params,
    )


def claim_job_by_id(conn: Conn, job_id: int, *, owner: str, now: float, lease: float) -> bool:
    """Take one given job if nobody holds it (the inline path)."""
    conn.execute(
        "UPDATE jobs SET status = 'doing', lease_owner = :owner, lease_expires_at = :until, "
        f"attempts = attempts + 1, updated_at = :now WHERE id = :id AND (status = 'todo' OR {_DUE})",
        {"id": job_id, "owner": owner, "until": now + lease, "now": now},
    )
    return conn.rowcount == 1


def extend_leases(conn: Conn, *, owner: str, job_ids: Sequence[int], until: float, now: float) -> int:
    if not job_ids:
        return 0
    params: dict[str, Any] = {"owner": owner, "until": until, "now": now}
    conn.execute(
        f"UPDATE jobs SET lease_expires_at = :until, updated_at = :now WHERE id IN {in_list('j', job_ids, params)} "
        "AND lease_owner = :owner AND status = 'doing'",
        params,
    )
    return conn.rowcount


def holds_lease(conn: Conn, job_id: int, owner: str) -> bool:
    return conn.scalar(
        "SELECT id FROM jobs WHERE id = :id AND lease_owner = :owner AND status = 'doing'",
        {"id": job_id, "owner": owner},
    ) is not None


def release_job(conn: Conn, job_id: int, *, owner: str | None, status: str, run_at: float | None,
                now: float, error: str | None = None) -> bool:
    """Finish (done/failed) or reschedule (todo at run_at) a job; False when the lease was lost."""
    values: dict[str, Any] = {"status": status, "lease_owner": None, "lease_expires_at": None, "updated_at": now}
    if run_at is not None:
        values["run_at"] = run_at
    if error is not None:
        values["last_error"] = error
    sets = ", ".join(f"{c} = :v_{c}" for c in values)
    params = {f"v_{c}": v for c, v in values.items()}
    params["id"] = job_id
    sql = f"UPDATE jobs SET {sets} WHERE id = :id"
    if owner is not None:
        sql += " AND lease_owner = :owner AND status = 'doing'"
        params["owner"] = owner
    conn.execute(sql, params)
    return conn.rowcount == 1


def reschedule_job(conn: Conn, job_id: int, *, owner: str, run_at: float, now: float,
                   claimed_run_at: float | None = None) -> bool:
    """Put a claimed job back for `run_at` — or for now, if it was woken while it ran."""
    woken = "CASE WHEN run_at > :claimed THEN :now ELSE :run_at END" if claimed_run_at is not None else ":run_at"
    conn.execute(
        f"UPDATE jobs SET status = 'todo', run_at = {woken}, lease_owner = NULL, lease_expires_at = NULL, "
        "updated_at = :now WHERE id = :id AND lease_owner = :owner AND status = 'doing'",
        {"id": job_id, "owner": owner, "run_at": run_at, "now": now, "claimed": claimed_run_at},
    )
    return conn.rowcount == 1


def schedule_job_at(conn: Conn, job_id: int, run_at: float, now: float) -> None:
    """Move a waiting (todo/done) job to run at `run_at`; a running one is left to its worker."""
    conn.execute(
        "UPDATE jobs SET status = 'todo', run_at = :run_at, updated_at = :now "
        "WHERE id = :id AND status IN ('todo', 'done', 'failed')",
        {"id": job_id, "run_at": run_at, "now": now},
    )
    if run_at <= now:
        notify_jobs(conn)


def wake_jobs_waiting_on_account(conn: Conn, account_id: int, after_seq: int, now: float) -> None:
    """Make due the job of the next post that waits for this account (rule 4 ordering).

    Only the next one: it wakes its own follower when done, so a long queue behind one
    account costs a claim per post, not one per post ahead of it. A job that is running
    gets its run_at moved too; reschedule_job sees that and comes back at once."""
    conn.execute(
        "UPDATE jobs SET run_at = :now, updated_at = :now "
        "WHERE kind = 'syndicate' AND ((status = 'todo' AND run_at > :now) OR status = 'doing') "
        "AND post_seq = (SELECT MIN(post_seq) FROM deliveries "
        f"WHERE account_id = :a AND post_seq > :s AND status NOT IN {_FINISHED})",
        {"now": now, "a": account_id, "s": after_seq},
    )
    if conn.rowcount:
        notify_jobs(conn)


def next_due_at(conn: Conn) -> float | None:
    todo = conn.scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'todo'")
    lease = conn.scalar("SELECT MIN(lease_expires_at) FROM jobs WHERE status = 'doing'")
    times = [t for t in (todo, lease) if t is not None]
    return min(times) if times else None


def count_jobs(conn: Conn, *, now: float) -> dict[str, int]:
    counts = {r["status"]: r["n"] for r in conn.all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}
    counts["due"] = conn.scalar(f"SELECT COUNT(*) FROM jobs WHERE {_DUE}", {"now": now})
    return counts


def oldest_due_run_at(conn: Conn, now: float) -> float | None:
    return conn.scalar("SELECT MIN(run_at) FROM jobs WHERE status = 'todo' AND run_at <= :now", {"now": now})


# --- circuit breakers -------------------------------------------------------------

def breaker(conn: Conn, account_id: int) -> Row | None:
    return conn.one("SELECT * FROM breakers WHERE account_id = :a", {"a": account_id})


def all_breakers(conn: Conn) -> dict[int, Row]:
    return {r["account_id"]: r for r in conn.all("SELECT * FROM breakers")}


def save_breaker(conn: Conn, account_id: int, **values: Any) -> None:
    _upsert(conn, "breakers", {"account_id": account_id, **values}, ["account_id"],
            defaults={"state": "closed", "failures": 0, "updated_at": values.get("updated_at", 0.0)})


def take_probe(conn: Conn, account_id: int, *, owner: str, now: float, until: float) -> bool:
    """Exactly one caller wins the half-open probe of an open breaker whose cooldown is over."""
    conn.execute(
        "UPDATE breakers SET state = 'half_open', probe_owner = :owner, probe_until = :until, updated_at = :now "
        "WHERE account_id = :a AND ((state = 'open' AND open_until <= :now) "
        "OR (state = 'half_open' AND probe_until < :now))",
        {"a": account_id, "owner": owner, "until": until, "now": now},
    )
    return conn.rowcount == 1


# --- rate limits -------------------------------------------------------------------

def rate_limit_rows(conn: Conn, keys: Sequence[str]) -> list[Row]:
    params: dict[str, Any] = {}
    return conn.all(f'SELECT * FROM rate_limits WHERE key IN {in_list("r", keys, params)}', params)


def all_rate_limits(conn: Conn) -> list[Row]:
    return conn.all("SELECT * FROM rate_limits ORDER BY key")


def save_rate_limit(conn: Conn, key: str, **values: Any) -> None:
    _upsert(conn, "rate_limits", {"key": key, **values}, ["key"],
            defaults={"consecutive_429": 0, "updated_at": values.get("updated_at", 0.0)})


# --- events --------------------------------------------------------------------------

def add_event(conn: Conn, *, ts: float, kind: str, message: str, level: str = "info",
              post_id: str | None = None, account: str | None = None, data: dict[str, Any] | None = None) -> None:
    _insert(conn, "events", {"ts": ts, "level": level, "kind": kind, "post_id": post_id, "account": account,
                             "message": message, "data": data})


def list_events(conn: Conn, *, limit: int = 50, post_id: str | None = None,
                after_id: int | None = None) -> list[Row]:
    where, params = ["1 = 1"], {"limit": limit}
    if post_id is not None:
        where.append("post_id = :post_id")
        params["post_id"] = post_id
    if after_id is not None:
        where.append("id > :after")
        params["after"] = after_id
    return conn.all(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit", params)


# --- workers ---------------------------------------------------------------------------

def save_worker(conn: Conn, worker_id: str, **values: Any) -> None:
    _upsert(conn, "workers", {"id": worker_id, **values}, ["id"])


def worker_started_at(conn: Conn, worker_id: str) -> float | None:
    return conn.scalar("SELECT started_at FROM workers WHERE id = :id", {"id": worker_id})


def last_heartbeat(conn: Conn) -> float | None:
    return conn.scalar("SELECT MAX(heartbeat_at) FROM workers WHERE state = 'running'")


def list_workers(conn: Conn) -> list[Row]:
    return conn.all("SELECT * FROM workers ORDER BY heartbeat_at DESC")
