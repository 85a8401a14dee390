# The audit list's verb filter matches a prefix ("envelope" → "envelope.%"): on PostgreSQL the
# (verb, id) index becomes a text_pattern_ops one, which serves that prefix as well as an exact verb
# (newest first). Built before the old one is dropped, both CONCURRENTLY: hence atomic = False.

from django.conf import settings
from django.db import migrations, models

import core.indexes


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('audit', '0003_list_sorts_and_prefix_search'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        core.indexes.AddIndexConcurrently(
            model_name='auditevent',
            index=core.indexes.PrefixIndex(models.F('verb'), models.OrderBy(models.F('id'), descending=True), name='audit_verb_prefix_idx'),
        ),
        core.indexes.RemoveIndexConcurrently(
            model_name='auditevent',
            name='audit_verb_idx',
        ),
    ]
