"""The declarative mapping and the SKYPOST setting, on plain objects (no Django site needed)."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from skypost.config import ConfigError
from skypost.contrib.django.conf import settings_from
from skypost.contrib.django.mapping import Registry, Syndicated, register_mixin_models, syndicate
from skypost.models import parse_post_document


class Tag:
    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name


class Tags:
    """Stands in for a related manager: it has .all() and is callable (as Django's are)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def all(self) -> list[Tag]:
        return [Tag(n) for n in self.names]

    def __call__(self, **kwargs: object) -> "Tags":
        return self


class Article:
    _meta = SimpleNamespace(label_lower="blog.article")

    def __init__(self, pk: int, status: str = "published") -> None:
        self.pk, self.status, self.title = pk, status, f"Post {pk}"
        self.author = SimpleNamespace(name="Ada", handle="ada.example.com")
        self.when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        self.labels = ["news", "python"]
        self.tags = Tags("django", "bluesky")

    def get_absolute_url(self) -> str:
        return f"https://blog.example.com/{self.pk}"


def test_syndicate_maps_attributes_methods_and_functions():
    registry = Registry()
    syndicate(Article, registry=registry, title="title", url="get_absolute_url",
              excerpt=lambda a: f"by {a.author.name}", accounts="author.handle",
              categories="labels", tags="tags", published_at="when",
              published=lambda a: a.status == "published")
    article = Article(7)
    found = registry.for_instance(article)
    assert found is not None and found.is_published(article)
    assert not found.is_published(Article(8, status="draft"))
    doc = found.document(article)
    assert doc == {"id": "blog.article:7", "title": "Post 7", "url": "https://blog.example.com/7",
                   "excerpt": "by Ada", "accounts": ["ada.example.com"],
                   "categories": ["news", "python"], "tags": ["django", "bluesky"],
                   "published_at": "2026-01-02T03:04:05+00:00"}
    assert parse_post_document(doc).published_at == article.when  # the engine accepts it


def test_class_decorator_form_and_subclasses_share_the_mapping():
    registry = Registry()

    @syndicate(registry=registry, id="pk", title="title", url="get_absolute_url",
               published="status")
    class Story(Article):
        pass

    class Special(Story):
        pass

    assert registry.for_instance(Special(3)).document_id(Special(3)) == "3"
    assert registry.for_instance(Article(3)) is None
    with pytest.raises(ValueError, match="already syndicated"):
        syndicate(Story, registry=registry, title="title", published="status")


def test_mistakes_are_refused_when_the_model_is_declared():
    registry = Registry()
    with pytest.raises(TypeError, match="unknown post document field"):
        syndicate(Article, registry=registry, title="title", headline="title", published="status")
    with pytest.raises(TypeError, match="title"):
        syndicate(Article, registry=registry, url="get_absolute_url", published="status")
    with pytest.raises(TypeError, match="published"):
        syndicate(Article, registry=registry, title="title")  # no `live`: say when it is out


def test_the_mixin_registers_models_that_describe_themselves():
    class Note(Syndicated):
        _meta = SimpleNamespace(label_lower="blog.note")
        pk = 5
        live = True

        def skypost_document(self) -> dict:
            return {"text": "hi", "url": "https://blog.example.com/n/5", "tags": ("a", "b"),
                    "image_url": None}

    registry = Registry()
    register_mixin_models([Note, Article], into=registry)
    found = registry.for_instance(Note())
    assert found is not None and registry.for_instance(Article(1)) is None
    assert found.is_published(Note())
    assert found.document(Note()) == {"id": "blog.note:5", "text": "hi",
                                      "url": "https://blog.example.com/n/5", "tags": ["a", "b"]}


def test_settings_come_from_the_skypost_dict_with_the_usual_checks():
    settings = settings_from({"database_url": "sqlite:////tmp/x.db", "allow_private_urls": True,
                              "retry_delays": [1, 2], "http_timeout": 5},
                             environ={"SKYPOST_HTTP_TIMEOUT": "30"})
    assert settings.database_url == "sqlite:////tmp/x.db"
    assert settings.allow_private_urls is True
    assert settings.retry_delays == (1.0, 2.0)
    assert settings.http_timeout == 5.0  # the site's setting wins over the environment
    with pytest.raises(ValueError, match="database_url"):
        settings_from({}, environ={})
    with pytest.raises(ConfigError, match="queue"):
        settings_from({"database_url": "sqlite://", "queue": "celery"}, environ={})
