"""The activity record's agent, instance and envelope keys stop being foreign-key constraints in
the database: every recorded decision paid a lookup and a key-share lock per key at commit.
PROTECT still refuses the ORM's delete of a row an event names (tests/tasks/test_activity_references.py)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("identities", "0010_fk_indexes_served_by_composites"),
        ("tasks", "0009_fk_indexes_served_by_composites"),
    ]

    operations = [
        migrations.AlterField(
            model_name="activityevent",
            name="agent",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="identities.agent",
            ),
        ),
        migrations.AlterField(
            model_name="activityevent",
            name="envelope",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="tasks.taskenvelope",
            ),
        ),
        migrations.AlterField(
            model_name="activityevent",
            name="instance",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="identities.instance",
            ),
        ),
    ]
