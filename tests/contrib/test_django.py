"""A real Django site with skypost's app: a save inside a transaction posts once, after commit."""

from __future__ import annotations

from tests.contrib.sites import run_scenario


def test_django_site_syndicates_once_after_commit(make_account, pds, proxy, tmp_path):
    alice = make_account("django")
    seen = run_scenario("djangoproject", tmp_path, handle=alice.handle, password=alice.app_password,
                        service=proxy.url)

    assert seen["draft"] is None  # a draft is not a post
    assert seen["inside_transaction"] is None  # nothing before the commit
    assert seen["after_commit"]["status"] == "pending"  # submitted at the commit, no network yet
    assert seen["rolled_back_known"] == []  # a rolled-back save never reaches skypost
    assert seen["worker"].endswith("after 2 job(s)")
    assert seen["article"]["status"] == "completed", seen["article"]
    assert seen["note"]["status"] == "completed", seen["note"]
    article_id = seen["article"]["id"]
    assert seen["submitted"] == sorted([article_id, seen["note"]["id"]])  # the edit added nothing

    records = pds.list_posts(alice.did)
    texts = sorted(r["value"]["text"] for r in records)
    assert len(records) == 2, texts  # exactly once each
    assert texts[0].startswith("A short note from a Django mixin model")
    assert texts[1].startswith("Hello from Django\n")  # as saved when published, not the edit
    uri = seen["article"]["deliveries"][0]["uri"]
    assert uri in {r["uri"] for r in records}

    assert "completed" in seen["admin_list"] and seen["article"]["deliveries"][0]["url"] in seen["admin_list"]
    assert "changed by update()" in seen["admin_completed"]
    assert "changed by update()" not in seen["admin_failed"]
    assert "Retry requested for 1 post(s)" in seen["admin_retry"]
