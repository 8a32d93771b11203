"""A real Wagtail site: publishing a page posts it once; edits, unpublish and republish do not."""

from __future__ import annotations

from tests.contrib.sites import run_scenario


def test_wagtail_publish_syndicates_once(make_account, pds, proxy, tmp_path):
    alice = make_account("wagtail")
    seen = run_scenario("wagtailproject", tmp_path, handle=alice.handle,
                        password=alice.app_password, service=proxy.url)

    assert seen["draft"] is None  # saving a draft revision is not publishing
    assert seen["inside_transaction"] is None  # nothing before the commit
    assert seen["after_commit"]["status"] == "pending"
    assert seen["worker_first"].endswith("after 1 job(s)")
    assert seen["published"]["status"] == "completed", seen["published"]
    assert seen["after_unpublish"]["status"] == "completed"  # unpublishing changes nothing
    assert seen["worker_last"].endswith("after 0 job(s)")  # edit and republish queued nothing
    assert seen["final"] == seen["published"]
    assert seen["submitted"] == [seen["published"]["id"]]

    records = pds.list_posts(alice.did)
    assert len(records) == 1  # exactly once
    record = records[0]
    assert record["uri"] == seen["published"]["deliveries"][0]["uri"]
    assert record["value"]["text"].startswith("Hello from Wagtail\n")
    assert record["value"]["embed"]["external"]["uri"] == "https://blog.example.com/hello-wagtail/"
