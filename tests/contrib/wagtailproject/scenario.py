"""The Wagtail site's life, run in its own process (Django settings are process-wide).

Prints one JSON object of observations on stdout; tests/contrib/test_wagtail.py checks them
and the records on the PDS. Needs SITE_DB, SITE_SKYPOST_URL, PDS_HANDLE, PDS_PASSWORD,
PDS_SERVICE in the environment.
"""

import io
import json
import os
import sys

import django


def main() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wtsite.settings")
    django.setup()

    from django.core.management import call_command
    from django.db import transaction
    from wagtail.models import Site

    from pages.models import BlogPage
    from skypost.contrib.django import get_skypost

    def worker() -> str:
        out = io.StringIO()
        call_command("skypost_worker", "--burst", stdout=out)
        return out.getvalue().strip()

    seen: dict = {}
    call_command("migrate", verbosity=0)
    Site.objects.update(hostname="blog.example.com", port=443)
    home = Site.objects.get().root_page
    app = get_skypost()
    app.add_account(os.environ["PDS_HANDLE"], os.environ["PDS_PASSWORD"],
                    service=os.environ["PDS_SERVICE"])

    page = BlogPage(title="Hello from Wagtail", slug="hello-wagtail", intro="Pages go out too.",
                    live=False)
    home.add_child(instance=page)
    page.save_revision()  # a draft: saved, not published
    post_id = f"page-{page.pk}"
    seen["draft"] = app.status(post_id)

    with transaction.atomic():
        page.save_revision().publish()
        seen["inside_transaction"] = app.status(post_id)
    seen["after_commit"] = app.status(post_id)
    seen["worker_first"] = worker()
    seen["published"] = app.status(post_id)

    page = BlogPage.objects.get(pk=page.pk)
    page.title = "Hello from Wagtail, edited"
    page.save_revision().publish()  # an edit of a live page
    page.unpublish()
    seen["after_unpublish"] = app.status(post_id)
    page = BlogPage.objects.get(pk=page.pk)
    page.save_revision().publish()  # live again: the same post, not a second one
    seen["worker_last"] = worker()
    seen["final"] = app.status(post_id)
    seen["submitted"] = [p["id"] for p in app.list_posts()]
    return seen


if __name__ == "__main__":
    json.dump(main(), sys.stdout)
