"""Foreign keys that a composite index already leads with lose their own single-column index
(tests/core/test_redundant_indexes.py): one index fewer to rewrite per row written."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import drop_key_index


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0005_move_external_accounts_in'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_key_index(
            migrations.AlterField(
                model_name='gatewayaudience',
                name='user',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='gateway_audiences', to=settings.AUTH_USER_MODEL),
            ),
            table='accounts_gatewayaudience',
            column='user_id',
            index='accounts_gatewayaudience_user_id_c196f9e2',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='signinsession',
                name='user',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='sign_in_sessions', to=settings.AUTH_USER_MODEL),
            ),
            table='accounts_signinsession',
            column='user_id',
            index='accounts_signinsession_user_id_abab10a5',
        ),
    ]
