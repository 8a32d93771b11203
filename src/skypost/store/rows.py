"""Typed rows: what the core statements of queries.py return.

Small frozen dataclasses built by `from_row`, so that the pipeline and the
queue see a data model (and mypy can check it) instead of dictionaries.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    args: Mapping[str, Any]
    post_seq: int | None
    status: str
    run_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    attempts: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "JobRow":
        return cls(id=int(row["id"]), kind=str(row["kind"]), args=dict(row["args"] or {}),
                   post_seq=row["post_seq"], status=str(row["status"]), run_at=float(row["run_at"]),
                   lease_owner=row["lease_owner"], lease_expires_at=row["lease_expires_at"],
                   attempts=int(row["attempts"]))


@dataclasses.dataclass(frozen=True)
class DeliveryRow:
    id: int
    post_seq: int
    account_id: int | None
    handle: str
    did: str
    position: int
    status: str
    attempts: int
    tried: bool
    next_attempt_at: float | None
    rkey: str
    uri: str | None
    cid: str | None
    url: str | None
    error: str | None
    failure_kind: str | None
    completed_at: float | None
    intent: str = "publish"  # publish: create the record; delete: remove it
    generation: int = 0
    # the gates written with the post (see gates.py): threadgate rules, postgate
    threadgate: str | None = None
    postgate: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "DeliveryRow":
        return cls(id=int(row["id"]), post_seq=int(row["post_seq"]), account_id=row["account_id"],
                   handle=str(row["handle"]), did=str(row["did"]), position=int(row["position"]),
                   status=str(row["status"]), attempts=int(row["attempts"]), tried=bool(row["tried"]),
                   next_attempt_at=row["next_attempt_at"], rkey=str(row["rkey"]), uri=row["uri"],
                   cid=row["cid"], url=row["url"], error=row["error"],
                   failure_kind=row.get("failure_kind"), completed_at=row["completed_at"],
                   intent=str(row.get("intent") or "publish"), generation=int(row.get("generation") or 0),
                   threadgate=row.get("threadgate"), postgate=bool(row.get("postgate")))


@dataclasses.dataclass(frozen=True)
class AccountRow:
    id: int
    handle: str
    did: str
    service: str
    state: str
    password_enc: str
    session_enc: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "AccountRow":
        return cls(id=int(row["id"]), handle=str(row["handle"]), did=str(row["did"]),
                   service=str(row["service"]), state=str(row["state"]),
                   password_enc=str(row["password_enc"]), session_enc=row["session_enc"])


@dataclasses.dataclass(frozen=True)
class BreakerRow:
    account_id: int
    state: str  # closed / open / half_open
    failures: int
    opened_at: float | None
    open_until: float | None
    probe_owner: str | None
    probe_until: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "BreakerRow":
        return cls(account_id=int(row["account_id"]), state=str(row["state"]),
                   failures=int(row["failures"]), opened_at=row["opened_at"],
                   open_until=row["open_until"], probe_owner=row["probe_owner"],
                   probe_until=row["probe_until"])

    @classmethod
    def closed(cls, account_id: int) -> "BreakerRow":
        return cls(account_id, "closed", 0, None, None, None, None)


@dataclasses.dataclass(frozen=True)
class RateLimitRow:
    key: str
    limit: int | None
    remaining: int | None
    reset_at: float | None
    policy: str | None
    blocked_until: float | None
    consecutive_429: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "RateLimitRow":
        return cls(key=str(row["key"]), limit=row["limit"], remaining=row["remaining"],
                   reset_at=row["reset_at"], policy=row["policy"],
                   blocked_until=row["blocked_until"],
                   consecutive_429=int(row["consecutive_429"] or 0))
