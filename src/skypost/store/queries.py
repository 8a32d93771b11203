"""Every SQL statement skypost runs, in SQL that SQLite and PostgreSQL both accept
(`:name` placeholders; db.Conn adapts them). Each function takes an open
connection, so callers decide what shares a transaction."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from skypost.models import FINISHED_DELIVERY, IDLE_DELIVERY

from .db import JSON_COLUMNS, Conn, encode_json
from .rows import BreakerRow, DeliveryRow, JobRow, RateLimitRow

Row = dict[str, Any]

_FINISHED = "('" + "','".join(FINISHED_DELIVERY) + "')"
_IDLE = "('" + "','".join(IDLE_DELIVERY) + "')"


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

def insert_account(conn: Conn, *, handle: str, did: str, service: str, auto_syndicate: bool,
                   include_categories: Sequence[str], exclude_categories: Sequence[str],
                   password_enc: str, session_enc: str | None, now: float) -> int:
    return conn.scalar(
        "INSERT INTO accounts (handle, did, service, auto_syndicate, include_categories, exclude_categories, "
        "state, password_enc, session_enc, created_at, updated_at) VALUES (:handle, :did, :service, :auto, "
        ":include, :exclude, 'active', :password_enc, :session_enc, :now, :now) RETURNING id",
        {"handle": handle, "did": did, "service": service, "auto": auto_syndicate,
         "include": encode_json(list(include_categories)), "exclude": encode_json(list(exclude_categories)),
         "password_enc": password_enc, "session_enc": session_enc, "now": now})


def update_account_rules(conn: Conn, account_id: int, *, auto_syndicate: bool | None,
                         include_categories: Sequence[str] | None, exclude_categories: Sequence[str] | None,
                         now: float) -> None:
    """The settings a person may change without a new login (None: unchanged)."""
    conn.execute(
        "UPDATE accounts SET auto_syndicate = COALESCE(:auto, auto_syndicate), "
        "include_categories = COALESCE(:include, include_categories), "
        "exclude_categories = COALESCE(:exclude, exclude_categories), updated_at = :now WHERE id = :id",
        {"id": account_id, "auto": auto_syndicate, "now": now,
         "include": encode_json(list(include_categories)) if include_categories is not None else None,
         "exclude": encode_json(list(exclude_categories)) if exclude_categories is not None else None})


def set_account_login(conn: Conn, account_id: int, *, service: str, did: str, password_enc: str,
                      session_enc: str, now: float) -> None:
    """A login that just succeeded: new credentials (and maybe service); the account is usable again."""
    conn.execute(
        "UPDATE accounts SET service = :service, did = :did, password_enc = :password_enc, "
        "session_enc = :session_enc, state = 'active', last_error = NULL, updated_at = :now WHERE id = :id",
        {"id": account_id, "service": service, "did": did, "password_enc": password_enc,
         "session_enc": session_enc, "now": now})


def set_account_session(conn: Conn, account_id: int, *, session_enc: str, now: float) -> None:
    conn.execute("UPDATE accounts SET session_enc = :session_enc, updated_at = :now WHERE id = :id",
                 {"id": account_id, "session_enc": session_enc, "now": now})


def mark_needs_reauth(conn: Conn, account_id: int, *, error: str, now: float) -> None:
    """The app password was refused: no more logins with it, and the session is dropped."""
    conn.execute("UPDATE accounts SET state = 'needs_reauth', last_error = :error, session_enc = NULL, "
                 "updated_at = :now WHERE id = :id", {"id": account_id, "error": error, "now": now})


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


def set_post_status(conn: Conn, seq: int, status: str, reason: str | None, now: float) -> None:
    conn.execute("UPDATE posts SET status = :status, reason = :reason, updated_at = :now WHERE seq = :seq",
                 {"seq": seq, "status": status, "reason": reason, "now": now})


def list_posts(conn: Conn, *, status: str | Sequence[str] | None = None, limit: int = 50,
               before_seq: int | None = None) -> list[Row]:
    # replies from the site are listed under their post, not among the posts
    where, params = ["kind = 'post'"], {"limit": limit}
    if status:
        where.append(f"status IN {in_list('st', [status] if isinstance(status, str) else status, params)}")
    if before_seq is not None:
        where.append("seq < :before")
        params["before"] = before_seq
    return conn.all(f"SELECT * FROM posts WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT :limit", params)


def count_posts_by_status(conn: Conn) -> dict[str, int]:
    return {r["status"]: r["n"] for r in conn.all(
        "SELECT status, COUNT(*) AS n FROM posts WHERE kind = 'post' GROUP BY status")}


def insert_post_if_absent(conn: Conn, *, post_id: str, document: Mapping[str, Any], status: str,
                          reason: str | None, source: str, now: float) -> int | None:
    """Insert a post; None when the id is known already (two submits racing: one wins)."""
    return conn.scalar(
        "INSERT INTO posts (post_id, document, status, reason, source, created_at, updated_at) "
        "VALUES (:post_id, :document, :status, :reason, :source, :now, :now) "
        "ON CONFLICT (post_id) DO NOTHING RETURNING seq",
        {"post_id": post_id, "document": encode_json(document), "status": status, "reason": reason,
         "source": source, "now": now},
    )


def insert_delivery(conn: Conn, *, post_seq: int, account_id: int, handle: str, did: str,
                    position: int, rkey: str, now: float, generation: int = 0) -> int | None:
    """A pending delivery; None when the account already has a record key `rkey` (a TID clash)."""
    return conn.scalar(
        "INSERT INTO deliveries (post_seq, account_id, handle, did, position, status, attempts, tried, "
        "rkey, intent, generation, created_at, updated_at) VALUES (:post_seq, :account_id, :handle, :did, "
        ":position, 'pending', 0, :false, :rkey, 'publish', :generation, :now, :now) "
        "ON CONFLICT (account_id, rkey) DO NOTHING RETURNING id",
        {"post_seq": post_seq, "account_id": account_id, "handle": handle, "did": did,
         "position": position, "rkey": rkey, "now": now, "false": False, "generation": generation},
    )


# a post's own deliveries: those of its current generation (a repost starts a new one)
_CURRENT = "generation = (SELECT p.generation FROM posts p WHERE p.seq = deliveries.post_seq)"


def deliveries_for_posts(conn: Conn, seqs: Iterable[int]) -> list[Row]:
    params: dict[str, Any] = {}
    placeholders = in_list("s", seqs, params)
    if not params:
        return []
    return conn.all(f"SELECT * FROM deliveries WHERE post_seq IN {placeholders} AND {_CURRENT} "
                    "ORDER BY post_seq, position", params)


def deliveries_of_post(conn: Conn, post_seq: int) -> list[DeliveryRow]:
    return [DeliveryRow.from_row(r) for r in conn.all(
        f"SELECT * FROM deliveries WHERE post_seq = :s AND {_CURRENT} ORDER BY position", {"s": post_seq})]


def delivery_row(conn: Conn, delivery_id: int) -> DeliveryRow | None:
    """One delivery as it is now (a delete may have changed it since the job read it)."""
    row = conn.one("SELECT * FROM deliveries WHERE id = :id", {"id": delivery_id})
    return DeliveryRow.from_row(row) if row else None


def delivery_by_id(conn: Conn, delivery_id: int) -> Row | None:
    return conn.one("SELECT * FROM deliveries WHERE id = :id", {"id": delivery_id})


def start_attempt(conn: Conn, delivery_id: int, now: float, *, intent: str = "publish") -> bool:
    """Count an attempt before it may reach the PDS: a later one checks for its record first.

    False when the delivery no longer has this intent or is finished (a delete was requested
    since it was read): then nothing may be sent. One statement, so a delete request and an
    attempt's start are ordered by the row: either the attempt is counted first (and the
    delete will remove what it may create), or it does not start."""
    conn.execute("UPDATE deliveries SET attempts = attempts + 1, tried = :true, updated_at = :now "
                 f"WHERE id = :id AND intent = :intent AND status NOT IN {_FINISHED}",
                 {"id": delivery_id, "now": now, "true": True, "intent": intent})
    return conn.rowcount == 1


def unspend_attempt(conn: Conn, delivery_id: int, now: float) -> None:
    """The attempt never reached a decision of the server (a 429): it does not count."""
    conn.execute("UPDATE deliveries SET attempts = attempts - 1, updated_at = :now "
                 "WHERE id = :id AND attempts > 0", {"id": delivery_id, "now": now})


def complete_delivery(conn: Conn, delivery_id: int, *, uri: str, cid: str, url: str, now: float) -> bool:
    """The record was created. If a delete was requested meanwhile the delivery stays
    unfinished and due (its record is to be removed); False then."""
    conn.execute(
        "UPDATE deliveries SET status = CASE WHEN intent = 'delete' THEN 'pending' ELSE 'completed' END, "
        "uri = :uri, cid = :cid, url = :url, error = NULL, failure_kind = NULL, "
        "next_attempt_at = CASE WHEN intent = 'delete' THEN :now ELSE NULL END, updated_at = :now, "
        "completed_at = CASE WHEN intent = 'delete' THEN NULL ELSE :now END "
        "WHERE id = :id", {"id": delivery_id, "uri": uri, "cid": cid, "url": url, "now": now})
    return conn.scalar("SELECT intent FROM deliveries WHERE id = :id", {"id": delivery_id}) != "delete"


def mark_deleted(conn: Conn, delivery_id: int, *, now: float) -> None:
    """Its record (and gates) are gone from the PDS, or never existed."""
    conn.execute(
        "UPDATE deliveries SET status = 'deleted', error = NULL, failure_kind = NULL, next_attempt_at = NULL, "
        "updated_at = :now, completed_at = :now WHERE id = :id AND intent = 'delete'",
        {"id": delivery_id, "now": now})


def _same_intent(intent: str | None, params: dict[str, Any]) -> str:
    """A write of an attempt's outcome applies only while the delivery still has the attempt's
    intent: a delete requested meanwhile has already made it due for the delete."""
    if intent is None:
        return ""
    params["intent"] = intent
    return " AND intent = :intent"


def fail_delivery(conn: Conn, delivery_id: int, *, kind: str, error: str, now: float,
                  intent: str | None = None) -> None:
    params: dict[str, Any] = {"id": delivery_id, "kind": kind, "error": error, "now": now}
    conn.execute(
        "UPDATE deliveries SET status = 'failed', failure_kind = :kind, error = :error, "
        "next_attempt_at = NULL, updated_at = :now, completed_at = :now WHERE id = :id"
        + _same_intent(intent, params), params)


def park_delivery(conn: Conn, delivery_id: int, *, status: str, kind: str, error: str, now: float,
                  intent: str | None = None) -> None:
    """Unfinished, but left alone until a person acts (a new app password)."""
    params: dict[str, Any] = {"id": delivery_id, "status": status, "kind": kind, "error": error, "now": now}
    conn.execute(
        "UPDATE deliveries SET status = :status, failure_kind = :kind, error = :error, "
        "next_attempt_at = NULL, updated_at = :now, completed_at = NULL WHERE id = :id"
        + _same_intent(intent, params), params)


def schedule_delivery(conn: Conn, delivery_id: int, *, status: str, next_attempt_at: float | None,
                      error: str | None, now: float, intent: str | None = None) -> None:
    params: dict[str, Any] = {"id": delivery_id, "status": status, "at": next_attempt_at, "error": error,
                              "now": now}
    conn.execute(
        "UPDATE deliveries SET status = :status, next_attempt_at = :at, error = :error, updated_at = :now "
        "WHERE id = :id" + _same_intent(intent, params), params)


# --- deleting and reposting ------------------------------------------------------------

def request_delete(conn: Conn, post_seq: int, *, now: float) -> bool:
    """Mark the post deleted-on-request; False when it already was (a second delete is a no-op)."""
    conn.execute("UPDATE posts SET delete_requested_at = :now, status = 'deleting', updated_at = :now "
                 "WHERE seq = :s AND delete_requested_at IS NULL", {"s": post_seq, "now": now})
    return conn.rowcount == 1


def turn_deliveries_to_delete(conn: Conn, post_seq: int, *, now: float) -> None:
    """In one statement per post: a delivery that may have reached the PDS (tried) is to be
    deleted, from its first attempt; one that never did is cancelled and never sent. An
    attempt in flight has `tried` set in its own committed gate (start_attempt), so it is
    never cancelled: its record is deleted once the attempt ends."""
    conn.execute(
        "UPDATE deliveries SET intent = 'delete', "
        "status = CASE WHEN tried THEN (CASE WHEN status IN ('needs_reauth') THEN status ELSE 'pending' END) "
        "ELSE 'cancelled' END, "
        "attempts = CASE WHEN tried THEN 0 ELSE attempts END, "
        "next_attempt_at = NULL, error = NULL, failure_kind = NULL, updated_at = :now, "
        "completed_at = CASE WHEN tried THEN NULL ELSE :now END "
        f"WHERE post_seq = :s AND {_CURRENT} AND intent = 'publish'",
        {"s": post_seq, "now": now})


def start_new_generation(conn: Conn, post_seq: int, *, now: float) -> int | None:
    """A deleted post becomes pending again with a new generation of deliveries (a repost);
    None unless it was deleted. The old deliveries and their record keys are kept."""
    return conn.scalar(
        "UPDATE posts SET generation = generation + 1, delete_requested_at = NULL, status = 'pending', "
        "reason = NULL, updated_at = :now WHERE seq = :s AND delete_requested_at IS NOT NULL "
        "RETURNING generation", {"s": post_seq, "now": now})


def reset_delivery(conn: Conn, delivery_id: int, now: float) -> None:
    """Queue a stopped delivery again from its first attempt (it keeps its record key)."""
    conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = NULL, error = NULL, "
        "failure_kind = NULL, updated_at = :now, completed_at = NULL WHERE id = :id",
        {"id": delivery_id, "now": now})


def make_delivery_due(conn: Conn, delivery_id: int, now: float) -> None:
    conn.execute("UPDATE deliveries SET next_attempt_at = :now, updated_at = :now WHERE id = :id",
                 {"id": delivery_id, "now": now})


def _accounts_filter(account_id: int | None, service: str | None, params: dict[str, Any]) -> str:
    if account_id is not None:
        params["a"] = account_id
        return "account_id = :a"
    params["service"] = service
    return "account_id IN (SELECT id FROM accounts WHERE service = :service)"


def hold_deliveries(conn: Conn, *, status: str, until: float, now: float, account_id: int | None = None,
                    service: str | None = None) -> int:
    """Every unfinished delivery of an account (or of every account on a service) waits until
    `until` with `status`, and the jobs that have nothing else to do move there too: a hold costs
    one statement, not a claim per queued post."""
    params: dict[str, Any] = {"status": status, "until": until, "now": now}
    accounts = _accounts_filter(account_id, service, params)
    deliveries_where = (f"{accounts} AND status NOT IN {_IDLE} "
                        "AND (next_attempt_at IS NULL OR next_attempt_at < :until OR status <> :status)")
    jobs_where = ("kind = 'syndicate' AND status = 'todo' "
                  "AND run_at < :until AND post_seq IN (SELECT post_seq FROM deliveries "
                  f"WHERE {accounts} AND status NOT IN {_IDLE}) "
                  "AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.post_seq = jobs.post_seq "
                  f"AND o.status NOT IN {_IDLE} AND (o.account_id IS NULL OR NOT (o.{accounts})))")
    if conn.is_postgres:
        # A hold is a shortcut, not a duty: rows another worker has locked right now are left to
        # it (its own gate reads the block). Waiting for them instead deadlocks two workers that
        # each hold their own delivery and hold the rest of the service at once (two 429s).
        deliveries_where = f"id IN (SELECT id FROM deliveries WHERE {deliveries_where} FOR UPDATE SKIP LOCKED)"
        jobs_where = f"id IN (SELECT id FROM jobs WHERE {jobs_where} FOR UPDATE SKIP LOCKED)"
    conn.execute(f"UPDATE deliveries SET status = :status, next_attempt_at = :until, updated_at = :now "
                 f"WHERE {deliveries_where}", params)
    held = conn.rowcount
    conn.execute(f"UPDATE jobs SET run_at = :until, updated_at = :now WHERE {jobs_where}", params)
    return held


def release_held(conn: Conn, *, account_id: int, status: str, now: float) -> int:
    """The cause of a hold is gone (the breaker closed): the account's held deliveries and
    their jobs are due now."""
    conn.execute(
        "UPDATE jobs SET run_at = :now, updated_at = :now WHERE kind = 'syndicate' AND status = 'todo' "
        "AND run_at > :now AND post_seq IN (SELECT post_seq FROM deliveries WHERE account_id = :a "
        "AND status = :status)", {"a": account_id, "status": status, "now": now})
    if conn.rowcount:
        notify_jobs(conn)
    conn.execute("UPDATE deliveries SET status = 'pending', next_attempt_at = NULL, updated_at = :now "
                 "WHERE account_id = :a AND status = :status", {"a": account_id, "status": status, "now": now})
    return conn.rowcount


def deliveries_stopped(conn: Conn, account_id: int, *, status: str, kind: str,
                       since: float | None = None) -> list[DeliveryRow]:
    """Deliveries of an account that stopped for `kind` (what recovery queues again)."""
    params: dict[str, Any] = {"a": account_id, "status": status, "kind": kind}
    sql = "SELECT * FROM deliveries WHERE account_id = :a AND status = :status AND failure_kind = :kind"
    if since is not None:
        sql += " AND completed_at >= :since"
        params["since"] = since
    return [DeliveryRow.from_row(r) for r in conn.all(sql + " ORDER BY post_seq", params)]


def earlier_unfinished_delivery(conn: Conn, account_id: int, post_seq: int) -> DeliveryRow | None:
    """The oldest delivery to the same account from an earlier post that a worker still has to do."""
    # a delete waits for nobody, and nobody waits for it
    row = conn.one(
        f"SELECT * FROM deliveries WHERE account_id = :a AND post_seq < :s AND status NOT IN {_IDLE} "
        "AND intent = 'publish' ORDER BY post_seq LIMIT 1",
        {"a": account_id, "s": post_seq},
    )
    return DeliveryRow.from_row(row) if row else None


def unfinished_deliveries_of_account(conn: Conn, account_id: int) -> list[Row]:
    return conn.all(f"SELECT * FROM deliveries WHERE account_id = :a AND status NOT IN {_FINISHED}",
                    {"a": account_id})


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


def insert_recurring_job(conn: Conn, *, kind: str, run_at: float, now: float) -> bool:
    """Schedule the one job of a recurring kind unless it waits or runs already (a unique
    partial index settles two workers starting at once)."""
    conn.execute(
        "INSERT INTO jobs (kind, args, status, run_at, attempts, created_at, updated_at) "
        "VALUES (:kind, '{}', 'todo', :run_at, 0, :now, :now) ON CONFLICT DO NOTHING",
        {"kind": kind, "run_at": run_at, "now": now})
    return conn.rowcount == 1


def wake_post_job(conn: Conn, post_seq: int, *, now: float) -> bool:
    """Make the post's syndication job due now, whatever its state, in one statement: a
    finished one runs again, a running one comes back at once when its worker reschedules
    it (run_at moved past its claim). On PostgreSQL the statement waits for a worker that is
    finishing the job (it locks the job row first) and then sees the job as that worker left
    it. False when the post has no job (pruned)."""
    conn.execute(
        "UPDATE jobs SET status = CASE WHEN status = 'doing' THEN status ELSE 'todo' END, run_at = :now, "
        "updated_at = :now WHERE post_seq = :s AND kind = 'syndicate'", {"s": post_seq, "now": now})
    woken = conn.rowcount > 0
    if woken:
        notify_jobs(conn)
    return woken


def lock_job(conn: Conn, job_id: int) -> None:
    """Hold the job row to the end of the transaction (PostgreSQL; SQLite writers are serial)."""
    if conn.is_postgres:
        conn.execute("SELECT id FROM jobs WHERE id = :id FOR UPDATE", {"id": job_id})


def job_for_post(conn: Conn, post_seq: int, kind: str = "syndicate") -> Row | None:
    return conn.one("SELECT * FROM jobs WHERE post_seq = :s AND kind = :k ORDER BY id DESC LIMIT 1",
                    {"s": post_seq, "k": kind})


# a todo job that is due, or a claimed job whose worker stopped renewing its lease
_DUE = "((status = 'todo' AND run_at <= :now) OR (status = 'doing' AND lease_expires_at < :now))"


def claim_job(conn: Conn, *, owner: str, now: float, lease: float,
              kinds: Sequence[str] | None = None) -> JobRow | None:
    """Atomically take the next due job (SKIP LOCKED on PostgreSQL, the write lock on SQLite)."""
    params: dict[str, Any] = {"now": now, "owner": owner, "until": now + lease}
    kind_filter = f" AND kind IN {in_list('k', kinds, params)}" if kinds else ""
    lock = " FOR UPDATE SKIP LOCKED" if conn.is_postgres else ""
    row = conn.one(
        "UPDATE jobs SET status = 'doing', lease_owner = :owner, lease_expires_at = :until, "
        "attempts = attempts + 1, updated_at = :now "
        f"WHERE id = (SELECT id FROM jobs WHERE {_DUE}{kind_filter} ORDER BY run_at, id LIMIT 1{lock}) "
        "RETURNING *",
        params,
    )
    return JobRow.from_row(row) if row else None


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


def holds_lease(conn: Conn, job_id: int, owner: str, *, now: float) -> bool:
    """Whether `owner` still holds the job, its lease unexpired. Not a row lock: the gate locks
    only the breaker and budget rows, in that order (a job taken over later still finds the
    record by its key)."""
    return conn.scalar(
        "SELECT id FROM jobs WHERE id = :id AND lease_owner = :owner AND status = 'doing' "
        "AND lease_expires_at >= :now",
        {"id": job_id, "owner": owner, "now": now},
    ) is not None


def release_job(conn: Conn, job_id: int, *, owner: str | None, status: str, run_at: float | None,
                now: float, error: str | None = None) -> bool:
    """Finish (done/failed) or reschedule (todo at run_at) a job; False when the lease was lost."""
    sql = ("UPDATE jobs SET status = :status, lease_owner = NULL, lease_expires_at = NULL, updated_at = :now, "
           "run_at = COALESCE(:run_at, run_at), last_error = COALESCE(:error, last_error) WHERE id = :id")
    params: dict[str, Any] = {"status": status, "now": now, "run_at": run_at, "error": error, "id": job_id}
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
    """Make due the job of the next post that waits for this account (posts to one account go
    out in submit order).

    Only the next one: it wakes its own follower when done, so a long queue behind one
    account costs a claim per post, not one per post ahead of it. A job that is running
    gets its run_at moved too; reschedule_job sees that and comes back at once."""
    conn.execute(
        "UPDATE jobs SET run_at = :now, updated_at = :now "
        "WHERE kind = 'syndicate' AND ((status = 'todo' AND run_at > :now) OR status = 'doing') "
        "AND post_seq = (SELECT MIN(post_seq) FROM deliveries "
        f"WHERE account_id = :a AND post_seq > :s AND status NOT IN {_IDLE})",
        {"now": now, "a": account_id, "s": after_seq},
    )
    if conn.rowcount:
        notify_jobs(conn)


def prune(conn: Conn, *, before: float) -> tuple[int, int]:
    """Delete finished jobs and activity-log events older than `before`; (jobs, events) deleted."""
    conn.execute("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < :before",
                 {"before": before})
    jobs = conn.rowcount
    conn.execute("DELETE FROM events WHERE ts < :before", {"before": before})
    return jobs, conn.rowcount


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

def breaker(conn: Conn, account_id: int) -> BreakerRow | None:
    row = conn.one("SELECT * FROM breakers WHERE account_id = :a", {"a": account_id})
    return BreakerRow.from_row(row) if row else None


def breaker_for_update(conn: Conn, account_id: int, now: float) -> BreakerRow:
    """The breaker row, created closed if missing and locked to the end of the transaction:
    the read-modify-write of a failure count is one row-locked transaction."""
    conn.execute("INSERT INTO breakers (account_id, state, failures, updated_at) "
                 "VALUES (:a, 'closed', 0, :now) ON CONFLICT (account_id) DO NOTHING",
                 {"a": account_id, "now": now})
    lock = " FOR UPDATE" if conn.is_postgres else ""
    row = conn.one(f"SELECT * FROM breakers WHERE account_id = :a{lock}", {"a": account_id})
    assert row is not None
    return BreakerRow.from_row(row)


def store_breaker(conn: Conn, row: BreakerRow, now: float) -> None:
    conn.execute(
        "UPDATE breakers SET state = :state, failures = :failures, opened_at = :opened_at, "
        "open_until = :open_until, probe_owner = :probe_owner, probe_until = :probe_until, "
        "updated_at = :now WHERE account_id = :a",
        {"a": row.account_id, "state": row.state, "failures": row.failures, "opened_at": row.opened_at,
         "open_until": row.open_until, "probe_owner": row.probe_owner, "probe_until": row.probe_until,
         "now": now})


def all_breakers(conn: Conn) -> dict[int, Row]:
    return {r["account_id"]: r for r in conn.all("SELECT * FROM breakers")}


def save_breaker(conn: Conn, account_id: int, **values: Any) -> None:
    """Set some columns of a breaker row (tests and tools; the pipeline uses store_breaker)."""
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

def rate_limit_rows(conn: Conn, keys: Sequence[str]) -> list[RateLimitRow]:
    params: dict[str, Any] = {}
    rows = conn.all(f'SELECT * FROM rate_limits WHERE key IN {in_list("r", keys, params)}', params)
    return [RateLimitRow.from_row(r) for r in rows]


def all_rate_limits(conn: Conn) -> list[Row]:
    return conn.all("SELECT * FROM rate_limits ORDER BY key")


def spend_budget(conn: Conn, key: str, *, cost: int, reserve: int, now: float) -> float | None:
    """Take `cost` from a known budget in one statement, keeping `reserve`; workers on every host
    spend from the same row. None: spent, or no budget known. A time: the budget is spent until then."""
    conn.execute(
        "UPDATE rate_limits SET remaining = remaining - :cost, updated_at = :now WHERE key = :key "
        "AND remaining IS NOT NULL AND reset_at > :now AND remaining - :cost >= :reserve",
        {"key": key, "cost": cost, "reserve": reserve, "now": now})
    if conn.rowcount:
        return None
    return conn.scalar(
        "SELECT reset_at FROM rate_limits WHERE key = :key AND remaining IS NOT NULL AND reset_at > :now",
        {"key": key, "now": now})


def refund_budget(conn: Conn, key: str, *, cost: int, now: float) -> None:
    conn.execute("UPDATE rate_limits SET remaining = remaining + :cost, updated_at = :now "
                 "WHERE key = :key AND remaining IS NOT NULL", {"key": key, "cost": cost, "now": now})


def observe_budget(conn: Conn, key: str, *, limit: int | None, remaining: int, reset_at: float | None,
                   policy: str | None, now: float, same_window: float = 1.0) -> None:
    """Merge what a response said of a budget. Its Remaining was the server's count when it
    received that call: within the same window keep the lower of it and ours (calls in flight
    on other workers have spent more), a later window replaces ours, an older one is ignored."""
    least = "LEAST" if conn.is_postgres else "MIN"
    conn.execute(
        'INSERT INTO rate_limits (key, "limit", remaining, reset_at, policy, consecutive_429, updated_at) '
        "VALUES (:key, :limit, :remaining, :reset_at, :policy, 0, :now) ON CONFLICT (key) DO UPDATE SET "
        "remaining = CASE "
        "WHEN rate_limits.reset_at IS NULL OR excluded.reset_at IS NULL OR rate_limits.remaining IS NULL "
        "THEN excluded.remaining "
        "WHEN excluded.reset_at < rate_limits.reset_at - :same THEN rate_limits.remaining "
        f"WHEN excluded.reset_at <= rate_limits.reset_at + :same "
        f"THEN {least}(rate_limits.remaining, excluded.remaining) "
        "ELSE excluded.remaining END, "
        "reset_at = CASE WHEN rate_limits.reset_at IS NOT NULL AND excluded.reset_at IS NOT NULL "
        "AND excluded.reset_at < rate_limits.reset_at - :same THEN rate_limits.reset_at "
        "ELSE excluded.reset_at END, "
        '"limit" = COALESCE(excluded."limit", rate_limits."limit"), '
        "policy = COALESCE(excluded.policy, rate_limits.policy), consecutive_429 = 0, "
        "updated_at = excluded.updated_at",
        {"key": key, "limit": limit, "remaining": remaining, "reset_at": reset_at, "policy": policy,
         "now": now, "same": same_window})


def store_block(conn: Conn, key: str, *, blocked_until: float, now: float) -> None:
    """A 429: nothing goes out on this budget before `blocked_until` (one statement: the
    later of two blocks wins, and the run of 429s is counted for the headerless fallback)."""
    greatest = "GREATEST" if conn.is_postgres else "MAX"
    conn.execute(
        "INSERT INTO rate_limits (key, blocked_until, consecutive_429, updated_at) "
        "VALUES (:key, :until, 1, :now) ON CONFLICT (key) DO UPDATE SET "
        f"blocked_until = {greatest}(COALESCE(rate_limits.blocked_until, 0), excluded.blocked_until), "
        "consecutive_429 = rate_limits.consecutive_429 + 1, updated_at = excluded.updated_at",
        {"key": key, "until": blocked_until, "now": now})


def save_rate_limit(conn: Conn, key: str, **values: Any) -> None:
    """Set some columns of a budget row (tests and tools; the pipeline spends and observes)."""
    _upsert(conn, "rate_limits", {"key": key, **values}, ["key"],
            defaults={"consecutive_429": 0, "updated_at": values.get("updated_at", 0.0)})


# --- events --------------------------------------------------------------------------

def add_event(conn: Conn, *, ts: float, kind: str, message: str, level: str = "info",
              post_id: str | None = None, account: str | None = None, data: dict[str, Any] | None = None) -> None:
    _insert(conn, "events", {"ts": ts, "level": level, "kind": kind, "post_id": post_id, "account": account,
                             "message": message, "data": data})


def list_events(conn: Conn, *, limit: int = 50, post_id: str | None = None,
                after_id: int | None = None) -> list[Row]:
    where: list[str] = ["1 = 1"]
    params: dict[str, Any] = {"limit": limit}
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


# --- secrets and re-evaluated posts (kept apart from the queries above) --------------------

def encrypted_secret_sample(conn: Conn) -> str | None:
    """One stored secret (an account's password or a hook's signing secret), or None."""
    return conn.scalar("SELECT password_enc AS v FROM accounts UNION ALL "
                       "SELECT secret_enc AS v FROM hooks UNION ALL SELECT secret_enc AS v FROM notify_targets LIMIT 1")


def delete_setting(conn: Conn, key: str) -> None:
    conn.execute("DELETE FROM settings WHERE key = :key", {"key": key})
