"""Foreign keys that a composite index already leads with lose their own single-column index
(tests/core/test_redundant_indexes.py): one index fewer to rewrite per row written."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.migration_ops import drop_key_index


class Migration(migrations.Migration):

    dependencies = [
        ('posture', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_key_index(
            migrations.AlterField(
                model_name='exportjob',
                name='requested_by',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
            ),
            table='tasks_exportjob',
            column='requested_by_id',
            index='tasks_exportjob_requested_by_id_009d81e4',
        ),
        drop_key_index(
            migrations.AlterField(
                model_name='standingexception',
                name='owner',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='standing_exceptions', to=settings.AUTH_USER_MODEL),
            ),
            table='tasks_standingexception',
            column='owner_id',
            index='tasks_standingexception_owner_id_cdbaae0a',
        ),
    ]
