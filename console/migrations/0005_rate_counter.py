"""The rate-limit counts' own table (core/ratelimit.py, core.sql.count_hits), unlogged on PostgreSQL:
a transaction that wrote only an unlogged table commits without waiting for a WAL flush, and a
count is not worth keeping across a crash."""

from django.db import migrations, models


def unlogged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE mandate_rate_counter SET UNLOGGED")


class Migration(migrations.Migration):
    dependencies = [("console", "0004_cache_table")]

    operations = [
        migrations.CreateModel(
            name="RateCounter",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "key", "slot", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("key", models.CharField(max_length=100)),
                ("slot", models.BigIntegerField()),
                ("n", models.IntegerField()),
                ("expires", models.BigIntegerField(db_index=True)),
            ],
            options={"db_table": "mandate_rate_counter"},
        ),
        migrations.RunPython(unlogged, migrations.RunPython.noop),
    ]
