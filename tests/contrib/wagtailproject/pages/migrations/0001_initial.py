import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [("wagtailcore", "0098_apitoken")]

    operations = [
        migrations.CreateModel(
            name="BlogPage",
            fields=[
                ("page_ptr", models.OneToOneField(
                    auto_created=True, on_delete=django.db.models.deletion.CASCADE,
                    parent_link=True, primary_key=True, serialize=False, to="wagtailcore.page")),
                ("intro", models.CharField(blank=True, max_length=250)),
            ],
            options={"abstract": False},
            bases=("wagtailcore.page",),
        ),
    ]
