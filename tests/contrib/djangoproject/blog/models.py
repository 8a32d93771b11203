from django.db import models

from skypost.contrib.django import Syndicated, syndicate


@syndicate(
    title="title",
    url=lambda a: f"https://blog.example.com/{a.slug}",
    excerpt="excerpt",
    categories=lambda a: [a.category] if a.category else [],
    published_at="published_at",
    published=lambda a: a.status == "published",
)
class Article(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    excerpt = models.TextField(blank=True)
    category = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=10, default="draft")
    published_at = models.DateTimeField(null=True, blank=True)


class Note(Syndicated, models.Model):
    """Describes its own post with the mixin's methods."""

    body = models.CharField(max_length=280)
    public = models.BooleanField(default=False)

    def skypost_id(self) -> str:
        return f"note-{self.pk}"

    def skypost_is_published(self) -> bool:
        return self.public

    def skypost_document(self) -> dict:
        return {"text": self.body, "url": f"https://blog.example.com/notes/{self.pk}"}
