"""Tests of the test harness itself: a real local PDS behind the fault-injecting proxy."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from atproto import Client
from atproto_client import exceptions as sdk_exc

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # plain `pytest` (not `python -m`)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.faultproxy import (  # noqa: E402
    FaultProxy,
    delay,
    error,
    error_after_forward,
    forward,
    lose_response,
    reset,
)
from tests.support.pds import (  # noqa: E402
    DEFAULT_PDS_DIR,
    LocalPDS,
    TestAccount,
    ensure_pds_installed,
    free_port,
    make_tid,
)

CREATE = "com.atproto.repo.createRecord"
POST = "app.bsky.feed.post"
TID_RE = re.compile(r"^[234567abcdefghij][234567a-z]{12}$")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LocalPDS, FaultProxy]]:
    ensure_pds_installed(DEFAULT_PDS_DIR)
    listen_port = free_port()
    # The proxy binds first (port 0 = any free port): its port becomes the PDS's public URL.
    with FaultProxy(0, f"http://127.0.0.1:{listen_port}") as proxy, LocalPDS(DEFAULT_PDS_DIR) as pds:
        pds.start(public_port=proxy.port, listen_port=listen_port)
        assert pds.url == proxy.url
        yield pds, proxy


@pytest.fixture(autouse=True)
def clean_proxy(stack: tuple[LocalPDS, FaultProxy]) -> Iterator[None]:
    stack[1].clear_rules()
    stack[1].reset_counts()
    yield
    stack[1].clear_rules()
    stack[1].set_response_headers("*", None)


@pytest.fixture(scope="module")
def pds(stack: tuple[LocalPDS, FaultProxy]) -> LocalPDS:
    return stack[0]


@pytest.fixture(scope="module")
def proxy(stack: tuple[LocalPDS, FaultProxy]) -> FaultProxy:
    return stack[1]


@pytest.fixture(scope="module")
def account(pds: LocalPDS) -> TestAccount:
    return pds.create_account("alice")


@pytest.fixture(scope="module")
def client(stack: tuple[LocalPDS, FaultProxy], account: TestAccount) -> Client:
    c = Client(base_url=stack[1].url)
    c.login(account.handle, account.app_password, fetch_bsky_profile=False)
    return c


def post_record(text: str) -> dict[str, Any]:
    return {"$type": POST, "text": text, "createdAt": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}


def create_post(client: Client, did: str, rkey: str, text: str = "hello") -> Any:
    return client.com.atproto.repo.create_record(
        {"repo": did, "collection": POST, "rkey": rkey, "record": post_record(text)}
    )


def test_make_tid_format_and_order() -> None:
    tids = [make_tid() for _ in range(50)]
    assert all(TID_RE.match(t) for t in tids)
    assert tids == sorted(tids) and len(set(tids)) == 50


def test_account_and_app_password_login_through_proxy(
    pds: LocalPDS, proxy: FaultProxy, account: TestAccount
) -> None:
    assert re.fullmatch(r"alice\w*\.test", account.handle) and account.did.startswith("did:plc:")
    assert re.fullmatch(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}", account.app_password)
    other = pds.create_account("alice")
    assert other.handle != account.handle
    c = Client(base_url=proxy.url)
    c.login(account.handle, account.app_password, fetch_bsky_profile=False)
    assert c.me is None
    assert proxy.calls("com.atproto.server.createSession") == 1
    assert proxy.calls() >= 1


def test_create_record_with_tid_rkey_is_listed(
    pds: LocalPDS, proxy: FaultProxy, client: Client, account: TestAccount
) -> None:
    rkey = make_tid()
    resp = create_post(client, account.did, rkey, "first post")
    assert resp.uri == f"at://{account.did}/{POST}/{rkey}"
    assert proxy.calls(CREATE) == 1
    posts = pds.list_posts(account.did)
    assert any(p["uri"] == resp.uri and p["value"]["text"] == "first post" for p in posts)
    rec = pds.get_record(account.did, POST, rkey)
    assert rec is not None and rec["cid"] == resp.cid
    assert pds.get_record(account.did, POST, make_tid()) is None


def test_lose_response_stores_record_but_client_errors(
    pds: LocalPDS, proxy: FaultProxy, client: Client, account: TestAccount
) -> None:
    rule = proxy.add_rule(CREATE, lose_response())
    rkey = make_tid()
    with pytest.raises((httpx.TransportError, sdk_exc.NetworkError)):
        create_post(client, account.did, rkey, "lost answer")
    assert rule.hits == 1 and rule.remaining == 0
    assert proxy.calls(CREATE) == 1
    assert pds.get_record(account.did, POST, rkey) is not None
    # the rule is used up: the next create goes through
    create_post(client, account.did, make_tid())
    assert proxy.calls(CREATE) == 2


def test_error_503_is_returned_and_counted(
    pds: LocalPDS, proxy: FaultProxy, client: Client, account: TestAccount
) -> None:
    proxy.add_rule(CREATE, error(503, {"error": "ServiceUnavailable", "message": "try later"}), times=2)
    rkey = make_tid()
    for _ in range(2):
        with pytest.raises(sdk_exc.RequestException) as ei:
            create_post(client, account.did, rkey)
        assert ei.value.response is not None and ei.value.response.status_code == 503
        assert ei.value.response.content.error == "ServiceUnavailable"
    assert proxy.calls(CREATE) == 2
    assert pds.get_record(account.did, POST, rkey) is None
    assert [s.action for s in proxy.seen() if s.method == CREATE] == ["Error", "Error"]


def test_same_rkey_twice_is_http_500(pds: LocalPDS, client: Client, account: TestAccount) -> None:
    rkey = make_tid()
    create_post(client, account.did, rkey, "once")
    with pytest.raises(sdk_exc.RequestException) as ei:
        create_post(client, account.did, rkey, "twice")
    resp = ei.value.response
    assert resp is not None and resp.status_code == 500
    assert resp.content.error == "InternalServerError"
    assert pds.get_record(account.did, POST, rkey)["value"]["text"] == "once"  # type: ignore[index]
    deadline = time.monotonic() + 5
    while "There is already a value at key" not in pds.log_tail(200_000, pds_log=True):
        assert time.monotonic() < deadline, pds.log_tail(pds_log=True)
        time.sleep(0.05)


def test_429_rule_returns_given_headers(proxy: FaultProxy, client: Client, account: TestAccount) -> None:
    reset_at = str(int(time.time()) + 30)
    proxy.add_rule(
        CREATE,
        error(
            429,
            {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
            {
                "RateLimit-Limit": "5000",
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": reset_at,
                "RateLimit-Policy": "5000;w=3600",
                "Retry-After": "7",
            },
        ),
    )
    with pytest.raises(sdk_exc.RateLimitExceededError) as ei:
        create_post(client, account.did, make_tid())
    h = ei.value.response.headers  # type: ignore[union-attr]
    assert h["ratelimit-remaining"] == "0" and h["retry-after"] == "7" and h["ratelimit-reset"] == reset_at


def test_error_after_forward_reset_delay_and_passthrough(
    pds: LocalPDS, proxy: FaultProxy, client: Client, account: TestAccount
) -> None:
    stored, not_stored, slow = make_tid(), make_tid(), make_tid()
    proxy.add_rule(CREATE, forward(), times=1)  # first create passes untouched
    proxy.add_rule(CREATE, error_after_forward(502, {"error": "BadGateway", "message": "x"}))
    proxy.add_rule(CREATE, reset())
    proxy.add_rule(CREATE, delay(0.3))
    create_post(client, account.did, make_tid())
    with pytest.raises(sdk_exc.NetworkError):  # the SDK maps 502 to NetworkError
        create_post(client, account.did, stored)
    assert pds.get_record(account.did, POST, stored) is not None
    with pytest.raises((httpx.TransportError, sdk_exc.NetworkError)):
        create_post(client, account.did, not_stored)
    assert pds.get_record(account.did, POST, not_stored) is None
    t0 = time.monotonic()
    create_post(client, account.did, slow)
    assert time.monotonic() - t0 >= 0.3
    assert [s.action for s in proxy.seen() if s.method == CREATE] == [
        "Forward",
        "ErrorAfterForward",
        "Reset",
        "Delay",
    ]
    assert proxy.calls(CREATE) == 4


def test_keepalive_client_and_extra_response_headers(proxy: FaultProxy, account: TestAccount) -> None:
    proxy.set_response_headers("*", {"RateLimit-Remaining": "42"})
    proxy.add_rule("com.atproto.repo.describeRepo", error(503), times=1)
    with httpx.Client(base_url=proxy.url) as http:  # one pooled client, many requests
        statuses = [
            http.get("/xrpc/com.atproto.repo.describeRepo", params={"repo": account.did}).status_code
            for _ in range(5)
        ]
        r = http.get("/xrpc/com.atproto.server.describeServer")
    assert statuses == [503, 200, 200, 200, 200]
    assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "42"
    assert r.headers["connection"] == "close"
    assert proxy.calls("com.atproto.repo.describeRepo") == 5
    assert proxy.wait_for_calls(None, 6, timeout=1)


def test_revoked_app_password_cannot_log_in(pds: LocalPDS, proxy: FaultProxy) -> None:
    acct = pds.create_account("bob")
    pds.revoke_app_password(acct)
    c = Client(base_url=proxy.url)
    with pytest.raises(sdk_exc.UnauthorizedError) as ei:
        c.login(acct.handle, acct.app_password, fetch_bsky_profile=False)
    assert ei.value.response is not None and ei.value.response.status_code == 401
