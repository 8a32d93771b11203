"""How a site's model becomes a post document: `@syndicate(...)` or the `Syndicated` mixin.

A mapping names, for each document field, an attribute (a dotted path; a method is called)
or a function of the object. Nothing here touches a database: it only reads the object.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any, Callable, Iterator, TypeVar, Union

FieldSpec = Union[str, Callable[[Any], Any]]
M = TypeVar("M", bound=type)

# the post document's fields besides `id` (the status guards live in the engine)
DOCUMENT_FIELDS = ("title", "url", "excerpt", "content_html", "image_url", "text", "categories",
                   "tags", "langs", "published_at", "accounts", "dont_syndicate")
_LIST_FIELDS = frozenset({"categories", "tags", "langs", "accounts"})


@dataclasses.dataclass(frozen=True)
class Syndication:
    """One model's mapping: its document id, whether it is published, and its document."""

    model: type
    document_id: Callable[[Any], str]
    is_published: Callable[[Any], bool]
    fields: Callable[[Any], dict[str, Any]]

    def document(self, obj: Any) -> dict[str, Any]:
        """The post document of `obj`, ready for `Skypost.submit` / `on_status_change`."""
        return {"id": self.document_id(obj), **self.fields(obj)}


class Registry:
    """The models a site syndicates, looked up by an instance's class (subclasses included)."""

    def __init__(self) -> None:
        self._by_model: dict[type, Syndication] = {}

    def register(self, syndication: Syndication) -> None:
        if syndication.model in self._by_model:
            raise ValueError(f"{syndication.model.__name__} is already syndicated")
        self._by_model[syndication.model] = syndication

    def for_instance(self, obj: Any) -> Syndication | None:
        return self.for_model(type(obj))

    def for_model(self, model: type) -> Syndication | None:
        for cls in model.__mro__:
            found = self._by_model.get(cls)
            if found is not None:
                return found
        return None

    def __iter__(self) -> Iterator[Syndication]:
        return iter(list(self._by_model.values()))


# like django.contrib.admin.site: the place that `@syndicate` registers into by default
registry = Registry()


def default_id(obj: Any) -> str:
    """`app_label.model:pk`: unique across the site's models."""
    return f"{obj._meta.label_lower}:{obj.pk}"


def resolve(obj: Any, spec: FieldSpec) -> Any:
    """The value a spec names: a function of the object, or a dotted attribute path."""
    if callable(spec):
        return spec(obj)
    value = obj
    for name in spec.split("."):
        value = getattr(value, name)
        if callable(value) and not hasattr(value, "all"):
            value = value()  # a method such as get_absolute_url
    return value


def to_document_value(name: str, value: Any) -> Any:
    """Django values as the post document wants them (text, lists of text, ISO dates)."""
    if value is None:
        return None
    if name in _LIST_FIELDS:
        if hasattr(value, "all"):  # a related manager (tags, categories)
            value = value.all()
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value]
    if name == "published_at" and isinstance(value, (datetime, date)):
        return value.isoformat()
    if name == "dont_syndicate":
        return bool(value)
    return str(value)


def _spec_fields(specs: dict[str, FieldSpec]) -> Callable[[Any], dict[str, Any]]:
    def fields(obj: Any) -> dict[str, Any]:
        doc = {}
        for name, spec in specs.items():
            value = to_document_value(name, resolve(obj, spec))
            if value is not None:
                doc[name] = value
        return doc

    return fields


def _wagtail_live(obj: Any) -> bool:
    return bool(obj.live)


def syndicate(model: type | None = None, /, *, id: FieldSpec | None = None,
              published: FieldSpec | None = None, registry: Registry = registry,
              **fields: FieldSpec) -> Callable[[M], M]:
    """Syndicate a model: `syndicate(Article, title=..., url=..., published=...)`, or as a class
    decorator without the model. `published` defaults to a Wagtail page's `live`."""
    unknown = sorted(set(fields) - set(DOCUMENT_FIELDS))
    if unknown:
        raise TypeError(f"unknown post document field(s): {', '.join(unknown)}")
    if "title" not in fields and "text" not in fields:
        raise TypeError("a title (or a custom text) is required")

    def register(target: M) -> M:
        if published is None and not hasattr(target, "live"):
            raise TypeError(f"{target.__name__}: say when an object is published (published=...)")
        id_spec = id

        def document_id(obj: Any) -> str:
            return default_id(obj) if id_spec is None else str(resolve(obj, id_spec))

        def is_published(obj: Any) -> bool:
            return bool(resolve(obj, published)) if published is not None else _wagtail_live(obj)

        registry.register(Syndication(target, document_id, is_published, _spec_fields(fields)))
        return target

    if model is not None:
        register(model)
        return lambda target: target
    return register


class Syndicated:
    """A mixin for models that describe their own post: define `skypost_document()` (the
    document without `id`) and `skypost_is_published()`; `skypost_id()` has a default."""

    def skypost_id(self) -> str:
        return default_id(self)

    def skypost_is_published(self) -> bool:
        return _wagtail_live(self)

    def skypost_document(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define skypost_document()")


def register_mixin_models(models: Iterator[type] | list[type], into: Registry) -> None:
    """Register every concrete model that inherits `Syndicated` (and is not registered yet)."""
    for model in models:
        if issubclass(model, Syndicated) and into.for_model(model) is None:
            into.register(Syndication(
                model,
                document_id=lambda obj: obj.skypost_id(),
                is_published=lambda obj: bool(obj.skypost_is_published()),
                fields=_mixin_fields,
            ))


def _mixin_fields(obj: Any) -> dict[str, Any]:
    converted = {k: to_document_value(k, v) for k, v in obj.skypost_document().items()}
    return {k: v for k, v in converted.items() if v is not None}
