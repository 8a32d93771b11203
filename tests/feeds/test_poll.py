"""Feed polling through the durable queue, on SQLite and PostgreSQL, against feeds
served on loopback. Without accounts a submitted post is recorded as skipped ("no
account selected"): the posts table shows exactly what the feed submitted."""

from __future__ import annotations

import random
import threading

import pytest

from skypost.models import ValidationError
from skypost.sources import feeds
from skypost.sources.entries import entry_post_id
from skypost.store import queries_feeds as qf
from tests.feeds.builders import CONTENT_TYPES, E, atom, entries, http_date, json_feed, rss, ts

INTERVAL = 300
PATH = "/feed.xml"


def feed_posts(app):
    """Titles of the posts the feeds submitted, in submit order."""
    return [p["title"] for p in reversed(app.list_posts(limit=1000)) if p["id"].startswith("feed:")]


def run_worker(app):
    app.run_worker(burst=True)
    # each run's threads leave their connections open until dispose(): close them, or
    # PostgreSQL runs out of connections over many polls
    app.db.dispose()


def tick(app, clock, seconds=INTERVAL):
    clock.advance(seconds)
    run_worker(app)


def new_entry(clock, n, **kwargs):
    return E(guid=f"urn:post:{n}", title=f"Post number {n}", link=f"https://blog.example.com/post/{n}",
             published=ts(clock()), summary=f"The summary of post {n}.", **kwargs)


def feed_row(app, feed_id):
    with app.db.connect() as conn:
        return qf.feed_by_id(conn, feed_id)


def poll_jobs(app, feed_id):
    with app.db.connect() as conn:
        return qf.live_poll_jobs(conn, feed_id)


def seen_count(app, feed_id):
    with app.db.connect() as conn:
        return len(qf.list_entries(conn, feed_id))


@pytest.fixture
def app(db_url, make_app):
    return make_app(db_url)


@pytest.mark.parametrize("kind", [rss, atom, json_feed])
def test_backlog_is_held_back_and_each_new_entry_is_submitted_once(app, clock, feed_server, kind):
    backlog = entries(3, start=clock())
    feed_server.set(PATH, kind(backlog), content_type=CONTENT_TYPES[kind])
    added = feeds.add_feed(app, feed_server.url(), interval=INTERVAL)
    assert added.seen == 3 and added.backfilled == ()
    feed_id = added.feed["id"]
    assert added.feed["next_poll_at"] is not None and added.feed["enabled"] is True

    run_worker(app)  # the first poll is one interval away
    tick(app, clock)
    tick(app, clock)
    assert feed_posts(app) == []

    items = [new_entry(clock, 4)] + backlog
    feed_server.set(PATH, kind(items), content_type=CONTENT_TYPES[kind])
    for _ in range(4):
        tick(app, clock)
    assert feed_posts(app) == ["Post number 4"]
    assert app.status(entry_post_id(feed_id, "id:urn:post:4"))["id"] == entry_post_id(feed_id, "id:urn:post:4")

    items = [new_entry(clock, 6), new_entry(clock, 5)] + items
    feed_server.set(PATH, kind(items), content_type=CONTENT_TYPES[kind])
    for _ in range(3):
        tick(app, clock)
    assert feed_posts(app) == ["Post number 4", "Post number 5", "Post number 6"]  # publication order
    assert len(poll_jobs(app, feed_id)) == 1  # one long-lived job per feed
    info = feeds.list_feeds(app)[0]
    assert info["entries_submitted"] == 3 and info["last_error"] is None and info["error_count"] == 0


def test_backfill_submits_the_newest_n_of_the_backlog(app, clock, feed_server):
    feed_server.set(PATH, rss(entries(5, start=clock())))
    added = feeds.add_feed(app, feed_server.url(), interval=INTERVAL, backfill=2)
    assert [o.title for o in added.backfilled] == ["Post number 4", "Post number 5"]  # oldest first
    assert feed_posts(app) == ["Post number 4", "Post number 5"]
    assert added.seen == 5 and added.feed["entries_submitted"] == 2
    for _ in range(2):
        tick(app, clock)
    assert feed_posts(app) == ["Post number 4", "Post number 5"]


def test_include_categories_filter_entries(app, clock, feed_server):
    backlog = entries(3, start=clock())
    backlog[0].categories = ("Cats",)
    backlog[1].categories = ("Dogs",)
    feed_server.set(PATH, rss(backlog))
    added = feeds.add_feed(app, feed_server.url(), interval=INTERVAL, backfill=1, include_categories=["cats"])
    assert [o.title for o in added.backfilled] == ["Post number 3"]
    items = [new_entry(clock, 6, categories=("Birds",)), new_entry(clock, 5), new_entry(clock, 4, categories=("CATS",))]
    feed_server.set(PATH, rss(items + backlog))
    result = feeds.poll_feeds(app)[0]
    assert [(o.title, o.submitted) for o in result.new] == [
        ("Post number 4", True), ("Post number 5", False), ("Post number 6", False)]
    assert "categories" in result.new[1].reason
    assert feed_posts(app) == ["Post number 3", "Post number 4"]
    # filtered entries are seen: a later category change does not post them
    items[1].categories = ("Cats",)
    feed_server.set(PATH, rss(items + backlog))
    feeds.poll_feeds(app)
    assert feed_posts(app) == ["Post number 3", "Post number 4"]


def test_edited_and_reordered_entries_are_not_reposted(app, clock, feed_server):
    items = entries(4, start=clock())
    feed_server.set(PATH, rss(items))
    feeds.add_feed(app, feed_server.url(), interval=INTERVAL)
    items = [new_entry(clock, 5)] + items
    feed_server.set(PATH, rss(items))
    tick(app, clock)
    assert feed_posts(app) == ["Post number 5"]

    # edited: same guid, new title, summary, date and even link
    clock.advance(60)
    items[0] = E(guid="urn:post:5", title="Post number 5 (updated)", link="https://blog.example.com/post/5-fixed",
                 published=ts(clock()), summary="Edited.")
    items[2].title, items[2].published = "Post number 3, edited and re-dated", ts(clock())
    feed_server.set(PATH, rss(items))
    tick(app, clock)
    # reordered, and a new entry in the middle
    shuffled = items[:]
    random.Random(5).shuffle(shuffled)
    shuffled.insert(2, new_entry(clock, 6))
    feed_server.set(PATH, rss(shuffled))
    tick(app, clock)
    tick(app, clock)
    assert feed_posts(app) == ["Post number 5", "Post number 6"]


def test_changed_guids_and_old_entries_under_new_ids_are_not_reposted(app, clock, feed_server):
    items = entries(3, start=clock())
    feed_server.set(PATH, rss(items))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    # a CMS migration: every guid changes, the links stay
    regenerated = [E(guid=e.guid.replace("urn:", "https://blog.example.com/?p="), title=e.title, link=e.link,
                     published=e.published, summary=e.summary) for e in items]
    # a domain move: guid and link change, the dates stay (an archive, older than the feed)
    moved = [E(guid="urn:moved:1", title="Post number 1", link="https://new.example.com/post/1",
               published=ts(clock() - 30 * 86400))]
    fresh = new_entry(clock, 4)
    feed_server.set(PATH, rss([fresh] + regenerated + moved))
    tick(app, clock)
    assert feed_posts(app) == ["Post number 4"]
    warnings = [e for e in app.events(limit=100) if e["kind"] == "feed_entry_skipped"]
    assert len(warnings) == 4
    assert any("same link" in e["message"] for e in warnings)
    assert any("long before the feed was added" in e["message"] for e in warnings)
    tick(app, clock)
    assert feed_posts(app) == ["Post number 4"]
    assert seen_count(app, feed_id) > 6  # every key is remembered


def test_conditional_get_with_etag_and_with_last_modified(app, clock, feed_server):
    items = entries(2, start=clock())
    feed_server.set(PATH, rss(items))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    for _ in range(3):
        tick(app, clock)
    assert feed_server.count(PATH, status=304) == 3
    assert all(r.headers.get("if-none-match") for r in feed_server.requests[1:])
    assert feed_row(app, feed_id)["last_status"] == 304

    items = [new_entry(clock, 3)] + items
    feed_server.set(PATH, rss(items))
    tick(app, clock)
    assert feed_posts(app) == ["Post number 3"]
    assert feed_server.requests[-1].status == 200

    # a server with Last-Modified only
    stamp = http_date(ts(clock()))
    feed_server.set("/lm.xml", rss(entries(2, start=clock(), prefix="lm")), etag=False, last_modified=stamp)
    feeds.add_feed(app, feed_server.url("/lm.xml"), interval=INTERVAL)
    before = feed_server.count("/lm.xml", status=304)
    tick(app, clock)
    tick(app, clock)
    assert feed_server.count("/lm.xml", status=304) == before + 2
    lm_requests = [r for r in feed_server.requests if r.path == "/lm.xml"]
    assert lm_requests[-1].headers.get("if-modified-since") == stamp
    assert "if-none-match" not in lm_requests[-1].headers


def _malformed(clock):
    return rss(entries(2, start=clock())).replace(b"</channel>", b"</chanel>")


def _html(clock):
    return b"<!DOCTYPE html><html><head><title>Blog</title></head><body><p>Welcome</p></body></html>"


def _huge(clock):
    item = b"<item><title>x</title><link>https://e.com/x</link><description>" + b"y" * 10_000 + b"</description></item>"
    return b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>' + item * 520 + b"</channel></rss>"


BROKEN = {
    "malformed": (dict(body=_malformed), "malformed feed: the XML is not well-formed"),
    "html": (dict(body=_html, content_type="text/html"), "not an RSS or Atom feed: the URL serves an HTML page"),
    "404": (dict(status=404, body=lambda c: b"gone fishing", content_type="text/plain"), "HTTP 404"),
    "500": (dict(status=500, body=lambda c: b"oops", content_type="text/plain"), "HTTP 500"),
    "huge": (dict(body=_huge), "is too large"),
    "huge_streamed": (dict(body=_huge, content_length=False), "larger than the limit"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_feed_sets_last_error_and_changes_nothing_else(app, clock, feed_server, case):
    items = entries(2, start=clock())
    feed_server.set(PATH, rss(items))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    before = feed_row(app, feed_id)
    spec, expected = BROKEN[case]
    spec = dict(spec)
    body = spec.pop("body")(clock)
    feed_server.set(PATH, body, **spec)
    tick(app, clock)

    info = feeds.list_feeds(app)[0]
    assert expected in info["last_error"], info
    assert info["error_count"] == 1 and info["enabled"] is True
    row = feed_row(app, feed_id)
    assert row["next_poll_at"] == clock() + 2 * INTERVAL  # backoff
    assert (row["etag"], row["title"], row["cutoff"]) == (before["etag"], before["title"], before["cutoff"])
    assert seen_count(app, feed_id) == 2 * 2  # two keys per entry, as at add time
    assert feed_posts(app) == []
    errors = [e for e in app.events(limit=50) if e["kind"] == "feed_error"]
    assert len(errors) == 1 and expected in errors[0]["message"] and errors[0]["level"] == "warning"

    # the same error again is not logged again; the feed recovers on its own
    tick(app, clock, 2 * INTERVAL)
    assert feeds.list_feeds(app)[0]["error_count"] == 2
    assert len([e for e in app.events(limit=50) if e["kind"] == "feed_error"]) == 1
    feed_server.set(PATH, rss([new_entry(clock, 3)] + items))
    tick(app, clock, 4 * INTERVAL)
    info = feeds.list_feeds(app)[0]
    assert info["last_error"] is None and info["error_count"] == 0
    assert feed_posts(app) == ["Post number 3"]
    assert any(e["kind"] == "feed_recovered" for e in app.events(limit=50))


def test_410_disables_the_feed(app, clock, feed_server):
    feed_server.set(PATH, rss(entries(2, start=clock())))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    feed_server.set(PATH, b"gone", status=410, content_type="text/plain")
    tick(app, clock)
    info = feeds.list_feeds(app)[0]
    assert info["enabled"] is False and info["next_poll_at"] is None
    assert "HTTP 410" in info["last_error"] and info["last_status"] == 410
    assert poll_jobs(app, feed_id) == []  # the job completed
    requests = feed_server.count(PATH)
    for _ in range(3):
        tick(app, clock, 24 * 3600)
    assert feed_server.count(PATH) == requests
    assert any(e["kind"] == "feed_disabled" and e["level"] == "error" for e in app.events(limit=20))
    assert feeds.poll_feeds(app) == []  # `feed poll` skips disabled feeds


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_delays_the_next_poll(app, clock, feed_server, status):
    feed_server.set(PATH, rss(entries(2, start=clock())))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    feed_server.set(PATH, b"slow down", status=status, content_type="text/plain", headers={"Retry-After": "3600"})
    tick(app, clock)
    row = feed_row(app, feed_id)
    assert row["next_poll_at"] == clock() + 3600
    assert f"HTTP {status}" in row["last_error"] and "3600 s" in row["last_error"]
    requests = feed_server.count(PATH)
    tick(app, clock, INTERVAL)
    tick(app, clock, INTERVAL)
    assert feed_server.count(PATH) == requests  # held back
    tick(app, clock, 3600 - 2 * INTERVAL)
    assert feed_server.count(PATH) == requests + 1

    # an HTTP date works too (the next poll is 3600 s away, as asked just now)
    feed_server.set(PATH, b"slow down", status=status, content_type="text/plain",
                    headers={"Retry-After": http_date(ts(clock() + 3600 + 7200))})
    tick(app, clock, 3600)
    assert abs(feed_row(app, feed_id)["next_poll_at"] - (clock() + 7200)) <= 1


def test_backoff_doubles_and_is_capped(app, clock, feed_server):
    feed_server.set(PATH, rss(entries(1, start=clock())))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    feed_server.set(PATH, b"down", status=500, content_type="text/plain")
    delays = []
    for _ in range(8):
        clock.advance(feed_row(app, feed_id)["next_poll_at"] - clock())
        run_worker(app)
        delays.append(feed_row(app, feed_id)["next_poll_at"] - clock())
    assert delays == [600, 1200, 2400, 4800, 9600, 19200, 21600, 21600]
    assert feeds.list_feeds(app)[0]["error_count"] == 8


def test_explicit_accounts_are_the_feeds_and_must_exist(app, clock, feed_server):
    app.add_account("alice.example.com", "pw", service="https://pds.invalid", verify=False)
    app.add_account("bob.example.com", "pw", service="https://pds.invalid", verify=False)
    feed_server.set(PATH, rss(entries(2, start=clock())))
    with pytest.raises(ValidationError) as info:
        feeds.add_feed(app, feed_server.url(), accounts=["alice.example.com", "nobody.example.com"])
    assert "unknown account @nobody.example.com" in info.value.errors["account"]
    assert feeds.list_feeds(app) == []

    added = feeds.add_feed(app, feed_server.url(), accounts=["@Bob.example.com"], interval=INTERVAL, backfill=1)
    assert added.feed["accounts"] == ["bob.example.com"]
    status = app.status(added.backfilled[0].post_id)
    assert [d["account"] for d in status["deliveries"]] == ["bob.example.com"]
    assert status["status"] == "pending"

    # the account goes away: the poll refuses, and nothing is marked as seen
    feed_id = added.feed["id"]
    seen = seen_count(app, feed_id)
    app.remove_account("bob.example.com")
    feed_server.set(PATH, rss([new_entry(clock, 3)] + entries(2, start=clock())))
    result = feeds.poll_feed(app, feed_id)
    assert "@bob.example.com no longer exists" in result.error
    assert seen_count(app, feed_id) == seen


def test_add_refuses_bad_input_and_writes_nothing(app, clock, feed_server):
    feed_server.set(PATH, rss(entries(2, start=clock())))
    feed_server.set("/page", b'<html><head><link rel="alternate" type="application/atom+xml" href="/atom">'
                             b"</head><body>hi</body></html>", content_type="text/html")
    cases = [
        (dict(url="ftp://example.com/feed"), "url", "http"),
        (dict(url="not a url"), "url", ""),
        (dict(url=feed_server.url(), interval=5), "interval", "at least 60"),
        (dict(url=feed_server.url(), backfill=-1), "backfill", ""),
        (dict(url=feed_server.url(), accounts=["not a handle!"]), "account", "valid handle"),
        (dict(url=feed_server.url("/missing")), "url", "cannot fetch the feed: HTTP 404"),
        (dict(url=feed_server.url("/page")), "url", f"links to the feed {feed_server.url('/atom')}"),
    ]
    for kwargs, field, text in cases:
        with pytest.raises(ValidationError) as info:
            feeds.add_feed(app, **kwargs)
        assert text in info.value.errors[field], (kwargs, info.value.errors)
    assert feeds.list_feeds(app) == []
    with app.db.connect() as conn:
        assert conn.scalar("SELECT COUNT(*) FROM jobs") == 0
        assert conn.scalar("SELECT COUNT(*) FROM feed_entries") == 0

    feeds.add_feed(app, feed_server.url())
    with pytest.raises(ValidationError) as info:
        feeds.add_feed(app, " " + feed_server.url() + " ")
    assert "already added" in info.value.errors["url"]


def test_remove_stops_polling_and_keeps_submitted_posts(app, clock, feed_server):
    feed_server.set(PATH, rss(entries(3, start=clock())))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL, backfill=1).feed["id"]
    removed = feeds.remove_feed(app, feed_server.url())
    assert removed["id"] == feed_id
    assert poll_jobs(app, feed_id) == [] and feeds.list_feeds(app) == []
    requests = feed_server.count()
    tick(app, clock)
    tick(app, clock)
    assert feed_server.count() == requests
    assert feed_posts(app) == ["Post number 3"]
    with pytest.raises(ValidationError):
        feeds.remove_feed(app, feed_server.url())
    with pytest.raises(ValidationError):
        feeds.poll_feeds(app, feed_server.url())


def test_manual_poll_moves_the_job_and_recreates_a_lost_one(app, clock, feed_server):
    items = entries(2, start=clock())
    feed_server.set(PATH, rss(items))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    clock.advance(200)
    feed_server.set(PATH, rss([new_entry(clock, 3)] + items))
    result = feeds.poll_feeds(app, feed_server.url())[0]
    assert result.outcome == "ok" and [o.title for o in result.submitted] == ["Post number 3"]
    jobs = poll_jobs(app, feed_id)
    assert len(jobs) == 1 and jobs[0]["run_at"] == clock() + INTERVAL
    requests = feed_server.count()
    tick(app, clock, 100)  # the old poll time: nothing is polled twice
    assert feed_server.count() == requests

    with app.db.transaction() as conn:  # a job lost by accident
        qf.finish_waiting_job(conn, jobs[0]["id"], clock())
    assert poll_jobs(app, feed_id) == []
    assert feeds.poll_feeds(app)[0].outcome == "not_modified"
    assert len(poll_jobs(app, feed_id)) == 1


def test_a_duplicate_poll_job_retires_itself(app, clock, feed_server):
    feed_server.set(PATH, rss(entries(2, start=clock())))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    app.queue.schedule("feed_poll", {"feed_id": feed_id}, run_at=clock() + INTERVAL)
    assert len(poll_jobs(app, feed_id)) == 2
    tick(app, clock)
    assert len(poll_jobs(app, feed_id)) == 1
    assert feed_server.count(PATH) == 2  # the add, and one poll


def test_concurrent_polls_submit_each_entry_once(app, clock, feed_server):
    items = entries(2, start=clock())
    feed_server.set(PATH, rss(items))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    clock.advance(INTERVAL)
    feed_server.set(PATH, rss([new_entry(clock, n) for n in range(22, 2, -1)] + items), etag=False)
    barrier = threading.Barrier(3)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(feeds.poll_feed(app, feed_id))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    submitted = [o.post_id for r in results for o in r.submitted]
    assert len(submitted) == 20 and len(set(submitted)) == 20
    assert sorted(feed_posts(app)) == sorted(f"Post number {n}" for n in range(3, 23))


def test_a_stopping_worker_leaves_the_rest_for_the_next_poll(app, clock, feed_server):
    items = entries(1, start=clock())
    feed_server.set(PATH, rss(items))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    feed_server.set(PATH, rss([new_entry(clock, 3), new_entry(clock, 2)] + items))
    calls = iter([False, True])
    result = feeds.poll_feed(app, feed_id, should_stop=lambda: next(calls, True))
    assert [o.title for o in result.submitted] == ["Post number 2"]
    assert result.next_poll_at == clock()
    result = feeds.poll_feed(app, feed_id)
    assert [o.title for o in result.submitted] == ["Post number 3"], result


def test_an_unexpected_error_is_shown_on_the_feed_and_retried_with_backoff(app, clock, feed_server, monkeypatch):
    feed_server.set(PATH, rss(entries(1, start=clock())))
    feed_id = feeds.add_feed(app, feed_server.url(), interval=INTERVAL).feed["id"]
    feed_server.set(PATH, rss([new_entry(clock, 2)] + entries(1, start=clock())))

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(feeds, "parse_feed", boom)
    tick(app, clock)
    row = feed_row(app, feed_id)
    assert row["last_error"] == "internal error: RuntimeError: boom"
    assert row["next_poll_at"] == clock() + 2 * INTERVAL
    assert [j["run_at"] for j in poll_jobs(app, feed_id)] == [row["next_poll_at"]]
    monkeypatch.undo()
    tick(app, clock, 2 * INTERVAL)
    assert feed_posts(app) == ["Post number 2"]


def test_a_new_entry_dated_a_little_before_the_add_is_a_new_post(app, clock, feed_server):
    """A scheduled post goes live after its date; a static site dates a post when writing
    began; the site's clock runs behind: first seen after the add, it is new."""
    feed_server.set(PATH, rss(entries(2, start=clock())))
    feeds.add_feed(app, feed_server.url(), interval=INTERVAL)
    late = [E(guid="urn:late:1", title="Scheduled", link="https://blog.example.com/late/1",
              published=ts(clock() - 600)),
            E(guid="urn:late:2", title="Same second", link="https://blog.example.com/late/2",
              published=ts(float(int(clock()))))]
    feed_server.set(PATH, rss(late + entries(2, start=clock())))
    tick(app, clock)
    assert sorted(feed_posts(app)) == ["Same second", "Scheduled"]


def test_a_json_feed_follows_the_same_cutoff_dedup_and_conditional_get(app, clock, feed_server):
    serve = dict(content_type="application/feed+json")
    items = entries(3, start=clock())
    feed_server.set(PATH, json_feed(items), **serve)
    added = feeds.add_feed(app, feed_server.url(), interval=INTERVAL, backfill=1)
    assert [o.title for o in added.backfilled] == ["Post number 3"] and added.seen == 3
    tick(app, clock)
    assert feed_server.requests[-1].status == 304  # the ETag is honoured
    # regenerated ids (same urls), an archive under new ids and urls, an edit: none is new
    regenerated = [E(guid=e.guid + "-v2", title=e.title, link=e.link, published=e.published)
                   for e in items]
    archive = [E(guid="urn:moved:1", title="Moved", link="https://new.example.com/1",
                 published=ts(clock() - 30 * 86400))]
    edited = E(guid=items[0].guid, title="Post number 3, edited", link=items[0].link,
               published=ts(clock()))
    fresh = new_entry(clock, 4)
    feed_server.set(PATH, json_feed([fresh, edited] + regenerated[1:] + archive), **serve)
    tick(app, clock)
    tick(app, clock)
    assert feed_posts(app) == ["Post number 3", "Post number 4"]
    skipped = [e["message"] for e in app.events(limit=100) if e["kind"] == "feed_entry_skipped"]
    assert any("same link" in m for m in skipped)
    assert any("long before the feed was added" in m for m in skipped)


def test_feed_add_names_a_json_feed_of_a_page_only_once_it_is_read(app, clock, feed_server):
    page = ('<!doctype html><html><head>'
            '<link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/2">'
            '<link rel="alternate" type="application/feed+json" href="{feed}">'
            "</head><body>hi</body></html>")
    feed_server.set("/wp-json/wp/v2/pages/2", b'{"id": 2, "title": {"rendered": "About"}}',
                    content_type="application/json")
    feed_server.set("/feed.json", json_feed(entries(2, start=clock())),
                    content_type="application/feed+json")
    feed_server.set("/broken.json", b'{"version": "https://jsonfeed.org/version/1", "items": ',
                    content_type="application/feed+json")
    feed_server.set("/page", page.format(feed="/feed.json"), content_type="text/html")
    feed_server.set("/page2", page.format(feed="/broken.json"), content_type="text/html")
    with pytest.raises(ValidationError) as info:
        feeds.add_feed(app, feed_server.url("/page"), interval=INTERVAL)
    assert info.value.errors["url"] == (
        "not an RSS or Atom feed: the URL serves an HTML page; it links to the feed "
        f"{feed_server.url('/feed.json')}: add that URL")
    with pytest.raises(ValidationError) as info:
        feeds.add_feed(app, feed_server.url("/page2"), interval=INTERVAL)
    assert info.value.errors["url"].endswith("none of the feeds it links to can be read")
    assert feed_server.count("/broken.json") == 1 and feed_server.count("/wp-json/wp/v2/pages/2") == 2
    assert feeds.list_feeds(app) == []
    # the named feed is one that `feed add` takes
    added = feeds.add_feed(app, feed_server.url("/feed.json"), interval=INTERVAL)
    assert added.seen == 2 and added.feed["title"] == "Test blog"
