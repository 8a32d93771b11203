from django.db import models
from wagtail.models import Page

from skypost.contrib.django import syndicate


@syndicate(
    id=lambda page: f"page-{page.pk}",
    title="title",
    url="get_full_url",
    excerpt="intro",
    published_at="first_published_at",
)  # published: the page is live (Wagtail's page_published)
class BlogPage(Page):
    intro = models.CharField(max_length=250, blank=True)
