"""The database cache's table: the store shared by every process for rate limits when no Redis is
configured (console/settings.py). ``createcachetable`` is idempotent and makes only the tables the
configured caches need, so with Redis (or local memory under tests) this does nothing."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("console", "0003_job_runs")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
