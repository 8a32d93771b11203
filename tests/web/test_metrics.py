"""/metrics: Prometheus text built from the database on each scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from skypost.store import queries as q
from tests.support.faultproxy import error

CREATE = "com.atproto.repo.createRecord"


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_from_the_database(web, make_account, proxy, clock):
    assert web.client.get("/metrics").status_code == 401
    alice = make_account("metrics")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url)
    web.app.submit({"id": "ok", "title": "Fine", "url": "https://e.com/ok"})
    clock.advance(2)
    web.app.run_worker(burst=True)  # completed 2 s after submit
    proxy.add_rule(CREATE, error(400, {"error": "InvalidRequest", "message": "bad record"}), times=1)
    web.app.submit({"id": "bad", "title": "Bad", "url": "https://e.com/bad"})
    web.app.run_worker(burst=True)
    web.app.pause()
    web.app.submit({"id": "held", "title": "Held", "url": "https://e.com/held"})
    clock.advance(30)
    with web.app.db.transaction() as conn:  # as the rate limiter records a RateLimit-Remaining header
        account_id = q.account_by_handle(conn, alice.handle)["id"]
        q.save_rate_limit(conn, f"account:{account_id}", limit=3000, remaining=2990, reset_at=clock() + 300,
                          consecutive_429=0, updated_at=clock())

    r = web.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    assert m[("skypost_deliveries", (("status", "completed"),))] == 1
    assert m[("skypost_deliveries", (("status", "failed"),))] == 1
    assert m[("skypost_deliveries", (("status", "pending"),))] == 1
    assert m[("skypost_delivery_attempts_total", ())] == 2
    assert m[("skypost_publish_latency_seconds_count", ())] == 1
    assert m[("skypost_publish_latency_seconds_sum", ())] == 2
    assert m[("skypost_publish_latency_seconds_bucket", (("le", "1.0"),))] == 0
    assert m[("skypost_publish_latency_seconds_bucket", (("le", "2.5"),))] == 1
    assert m[("skypost_publish_latency_seconds_bucket", (("le", "+Inf"),))] == 1
    assert m[("skypost_breaker_state", (("account", alice.handle), ("state", "closed")))] == 1
    assert m[("skypost_breaker_state", (("account", alice.handle), ("state", "open")))] == 0
    assert m[("skypost_rate_limit_remaining", (("account", alice.handle),))] == 2990
    assert m[("skypost_account_needs_reauth", (("account", alice.handle),))] == 0
    assert m[("skypost_queue_jobs", (("status", "todo"),))] == 1
    assert m[("skypost_queue_due_jobs", ())] == 1
    assert m[("skypost_oldest_due_job_age_seconds", ())] == 30
    assert m[("skypost_paused", ())] == 1
    assert m[("skypost_posts", (("status", "failed"),))] == 1
