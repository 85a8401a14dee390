"""Foreign keys that a composite index already leads with lose their own single-column index
(tests/core/test_redundant_indexes.py): one index fewer to rewrite per row written."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import drop_key_index


class Migration(migrations.Migration):

    dependencies = [
        ('identities', '0009_move_external_accounts_out'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_key_index(
            migrations.AlterField(
                model_name='agent',
                name='owner',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='agents', to=settings.AUTH_USER_MODEL),
            ),
            table='identities_agent',
            column='owner_id',
            index='identities_agent_owner_id_eafa942d',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='instance',
                name='agent',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='instances', to='identities.agent'),
            ),
            table='identities_instance',
            column='agent_id',
            index='identities_instance_agent_id_24ad41d3',
        ),
    ]
