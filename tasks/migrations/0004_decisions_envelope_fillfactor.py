"""Room on each page of task envelopes for HOT updates.

Every allowed decision rewrites its envelope's row (``actions_used + 1``). With full pages the new
row version lands on another page, so every index gets a new entry and lookups wade through dead
ones; with free room on the page PostgreSQL updates in place (HOT) and prunes old versions as it
goes. PostgreSQL only; a no-op elsewhere.
"""

from django.db import migrations


def set_fillfactor(apps, schema_editor, value="70"):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE tasks_taskenvelope SET (fillfactor = {int(value)})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE tasks_taskenvelope RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("tasks", "0003_console_activity_drift_idx")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
