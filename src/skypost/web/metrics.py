"""Prometheus metrics, computed from the database on every scrape.

A fresh CollectorRegistry per scrape: the numbers are the shared state of every
worker and server process (nothing is counted in this process's memory).
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from skypost.models import DeliveryStatus
from skypost.store import queries as q
from skypost.store import queries_web as qw
from skypost.store.db import Database

# seconds from submit to live on Bluesky: the first attempt is immediate, retries wait 60/120/300 s
LATENCY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0)
JOB_STATUSES = ("todo", "doing", "done", "failed")
BREAKER_STATES = ("closed", "open", "half_open")


class SkypostCollector(Collector):
    def __init__(self, db: Database, clock: Callable[[], float]):
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        with self.db.connect() as conn:
            deliveries = q.count_deliveries_by_status(conn)
            posts = q.count_posts_by_status(conn)
            attempts = qw.delivery_attempts_total(conn)
            buckets, count, total = qw.publish_latency_histogram(conn, LATENCY_BUCKETS)
            accounts = q.list_accounts(conn)
            breakers = q.all_breakers(conn)
            limits = {r["key"]: r for r in q.all_rate_limits(conn)}
            jobs = q.count_jobs(conn, now=now)
            oldest = q.oldest_due_run_at(conn, now)
            paused = q.get_setting(conn, "paused") == "1"

        by_status = GaugeMetricFamily("skypost_deliveries", "Deliveries by status", labels=["status"])
        for status in DeliveryStatus:
            by_status.add_metric([status.value], deliveries.get(status.value, 0))
        yield by_status

        post_family = GaugeMetricFamily("skypost_posts", "Posts by stored status", labels=["status"])
        for status, n in sorted(posts.items()):
            post_family.add_metric([status], n)
        yield post_family

        yield CounterMetricFamily("skypost_delivery_attempts", "Attempts made over all deliveries", value=attempts)

        cumulative = [(str(bound), n) for bound, n in zip(LATENCY_BUCKETS, buckets)] + [("+Inf", count)]
        yield HistogramMetricFamily("skypost_publish_latency_seconds",
                                    "Time from submit to live on Bluesky (completed deliveries)",
                                    buckets=cumulative, sum_value=total)

        breaker = GaugeMetricFamily("skypost_breaker_state", "Circuit breaker state per account (1 = current)",
                                    labels=["account", "state"])
        remaining = GaugeMetricFamily("skypost_rate_limit_remaining",
                                      "Requests left in the account's current rate-limit window", labels=["account"])
        reauth = GaugeMetricFamily("skypost_account_needs_reauth", "1 when the app password must be re-entered",
                                   labels=["account"])
        for account in accounts:
            state = breakers[account["id"]]["state"] if account["id"] in breakers else "closed"
            for candidate in BREAKER_STATES:
                breaker.add_metric([account["handle"], candidate], 1.0 if candidate == state else 0.0)
            limit = limits.get(f"account:{account['id']}")
            if limit is not None and limit["remaining"] is not None:
                remaining.add_metric([account["handle"]], limit["remaining"])
            reauth.add_metric([account["handle"]], 1.0 if account["state"] == "needs_reauth" else 0.0)
        yield breaker
        yield remaining
        yield reauth

        queue = GaugeMetricFamily("skypost_queue_jobs", "Jobs by status", labels=["status"])
        for status in JOB_STATUSES:
            queue.add_metric([status], jobs.get(status, 0))
        yield queue
        yield GaugeMetricFamily("skypost_queue_due_jobs", "Jobs due now (or whose lease expired)",
                                value=jobs.get("due", 0))
        yield GaugeMetricFamily("skypost_oldest_due_job_age_seconds", "How long the oldest due job has waited",
                                value=max(0.0, now - oldest) if oldest is not None else 0.0)
        yield GaugeMetricFamily("skypost_paused", "1 while syndication is paused", value=1.0 if paused else 0.0)


def render(db: Database, clock: Callable[[], float]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SkypostCollector(db, clock))
    return generate_latest(registry)
