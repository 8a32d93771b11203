"""The Django site's life, run in its own process (Django settings are process-wide).

Prints one JSON object of observations on stdout; tests/contrib/test_django.py checks them
and the records on the PDS. Needs SITE_DB, SITE_SKYPOST_URL, PDS_HANDLE, PDS_PASSWORD,
PDS_SERVICE in the environment.
"""

import io
import json
import os
import sys

import django


class Rollback(Exception):
    pass


def main() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
    django.setup()

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import transaction
    from django.test import Client
    from django.utils import timezone

    from blog.models import Article, Note
    from skypost.contrib.django import get_skypost

    seen: dict = {}
    call_command("migrate", verbosity=0)
    app = get_skypost()
    app.add_account(os.environ["PDS_HANDLE"], os.environ["PDS_PASSWORD"],
                    service=os.environ["PDS_SERVICE"])

    article = Article.objects.create(title="Hello from Django", slug="hello",
                                     excerpt="A first post.", category="news")
    seen["draft"] = app.status(f"blog.article:{article.pk}")

    with transaction.atomic():
        article.status = "published"
        article.published_at = timezone.now()
        article.save()
        seen["inside_transaction"] = app.status(f"blog.article:{article.pk}")
    seen["after_commit"] = app.status(f"blog.article:{article.pk}")

    try:
        with transaction.atomic():
            Article.objects.create(title="Never", slug="never", status="published")
            raise Rollback
    except Rollback:
        pass
    seen["rolled_back_known"] = [p["id"] for p in app.list_posts() if "never" in p["url"]]

    article.title = "Hello from Django, edited"
    article.save()  # an edit of a published article: not a new post
    Article.objects.filter(pk=article.pk).update(title="changed by update()")  # no signal at all

    note = Note.objects.create(body="A short note from a Django mixin model", public=True)

    out = io.StringIO()
    call_command("skypost_worker", "--burst", stdout=out)
    seen["worker"] = out.getvalue().strip()
    seen["article"] = app.status(f"blog.article:{article.pk}")
    seen["note"] = app.status(f"note-{note.pk}")
    seen["submitted"] = sorted(p["id"] for p in app.list_posts())

    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    changelist = "/admin/blog/article/"
    seen["admin_list"] = client.get(changelist).content.decode()
    seen["admin_completed"] = client.get(changelist + "?skypost_status=completed").content.decode()
    seen["admin_failed"] = client.get(changelist + "?skypost_status=failed").content.decode()
    retried = client.post(changelist, {"action": "skypost_retry", "_selected_action": [article.pk]},
                          follow=True)
    seen["admin_retry"] = retried.content.decode()
    return seen


if __name__ == "__main__":
    json.dump(main(), sys.stdout)
