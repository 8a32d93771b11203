"""skypost for Django and Wagtail sites.

    INSTALLED_APPS += ["skypost.contrib.django"]
    SKYPOST = {"database_url": "sqlite:////srv/site/skypost.db"}

    @syndicate(id="pk", title="title", url="get_absolute_url",
               published=lambda a: a.status == "published")
    class Article(models.Model): ...

A change into "published" is submitted once the transaction commits; `manage.py
skypost_worker` publishes. Wagtail pages are syndicated by `page_published`.
"""

from skypost.contrib.django.apps import get_skypost
from skypost.contrib.django.mapping import Registry, Syndicated, Syndication, registry, syndicate

__all__ = ["Registry", "Syndicated", "Syndication", "get_skypost", "registry", "syndicate"]
