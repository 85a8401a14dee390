# The audit list sorts by time both ways and searches actor and target by prefix: each served by an
# index. The trail is large and written all the time, so on PostgreSQL every index is built (and the
# superseded (at) index dropped) CONCURRENTLY, without a write lock; hence atomic = False.

import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models

import core.indexes


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('audit', '0002_keyed_checkpoints'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        core.indexes.AddIndexConcurrently(
            model_name='auditevent',
            index=models.Index(fields=['at', 'id'], name='audit_at_id_idx'),
        ),
        core.indexes.RemoveIndexConcurrently(
            model_name='auditevent',
            name='audit_at_idx',
        ),
        core.indexes.AddIndexConcurrently(
            model_name='auditevent',
            index=core.indexes.PrefixIndex(django.db.models.functions.text.Upper('actor'), name='audit_actor_prefix_idx'),
        ),
        core.indexes.AddIndexConcurrently(
            model_name='auditevent',
            index=core.indexes.PrefixIndex(models.F('target_id'), name='audit_target_id_prefix_idx'),
        ),
        core.indexes.AddIndexConcurrently(
            model_name='auditevent',
            index=core.indexes.PrefixIndex(django.db.models.functions.text.Upper('target_label'), name='audit_target_label_prefix_idx'),
        ),
    ]
