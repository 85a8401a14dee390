"""Operations the migrations share."""

from __future__ import annotations

from django.db import migrations


def drop_key_index(alter_field: migrations.AlterField, *, table: str, column: str, index: str):
    """``alter_field`` (a ForeignKey now ``db_index=False``) as the state change alone, and its
    single-column index dropped by name.

    Left to itself, Django's AlterField for ``db_index`` drops and re-adds the foreign-key
    constraint too, and re-adding it checks every row under a lock that blocks writes: minutes on a
    large activity table. Dropping the index alone is what the change means.
    """
    return migrations.SeparateDatabaseAndState(
        state_operations=[alter_field],
        database_operations=[
            migrations.RunSQL(
                f'DROP INDEX IF EXISTS "{index}"',
                reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
            )
        ],
    )
