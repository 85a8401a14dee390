"""Foreign keys that a composite index already leads with lose their own single-column index
(tests/core/test_redundant_indexes.py): one index fewer to rewrite per row written."""

import django.db.models.deletion
from django.db import migrations, models

from core.migration_ops import drop_key_index


class Migration(migrations.Migration):

    dependencies = [
        ('identities', '0010_fk_indexes_served_by_composites'),
        ('tasks', '0008_envelope_audiences'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='activityevent',
            name='activity_time_idx',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='activityevent',
                name='agent',
                field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='identities.agent'),
            ),
            table='tasks_activityevent',
            column='agent_id',
            index='tasks_activityevent_agent_id_1bc57dd0',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='activityevent',
                name='envelope',
                field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='tasks.taskenvelope'),
            ),
            table='tasks_activityevent',
            column='envelope_id',
            index='tasks_activityevent_envelope_id_40059b84',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='activityevent',
                name='instance',
                field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='identities.instance'),
            ),
            table='tasks_activityevent',
            column='instance_id',
            index='tasks_activityevent_instance_id_487d4fae',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='approval',
                name='envelope',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='approvals', to='tasks.taskenvelope'),
            ),
            table='tasks_approval',
            column='envelope_id',
            index='tasks_approval_envelope_id_324df178',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='taskenvelope',
                name='agent',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='envelopes', to='identities.agent'),
            ),
            table='tasks_taskenvelope',
            column='agent_id',
            index='tasks_taskenvelope_agent_id_41f6897a',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='taskenvelope',
                name='instance',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='envelopes', to='identities.instance'),
            ),
            table='tasks_taskenvelope',
            column='instance_id',
            index='tasks_taskenvelope_instance_id_57414ebe',
        ),
    ]
