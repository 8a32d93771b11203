"""A real Django site with skypost's app: a save inside a transaction posts once, after commit;
the admin shows the status, filters by it and retries."""

from __future__ import annotations

from tests.contrib.sites import check_django_scenario, run_scenario


def test_django_site_syndicates_once_after_commit(make_account, pds, proxy, tmp_path):
    alice = make_account("django")
    seen = run_scenario("djangoproject", tmp_path, handle=alice.handle, password=alice.app_password,
                        service=proxy.url)
    check_django_scenario(seen, pds.list_posts(alice.did))
