from django.contrib import admin

from blog.models import Article
from skypost.contrib.django.admin import SyndicationAdminMixin


@admin.register(Article)
class ArticleAdmin(SyndicationAdminMixin, admin.ModelAdmin):
    list_display = ["title", "status"]
