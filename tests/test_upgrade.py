"""An existing installation upgrades without loss.

``tests/fixtures/upgrade/`` holds a SQLite database and a PostgreSQL dump made by the migrations of
the layout before the layering change (commit b66339b), filled by ``seed_demo`` and
``tests/fixtures/build_upgrade_fixture.py`` so every table has rows. The test applies today's
migrations to a copy and checks that every row of every table is still there, unchanged, that
every model reads its rows, and that the audit chain still verifies.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

FIXTURES = Path(__file__).parent / "fixtures" / "upgrade"
# Rows Django itself adds for models that changed app (content types and their permissions).
_GROWS = {"django_migrations", "django_content_type", "auth_permission", "sqlite_sequence"}
_PRODUCT_APPS = {"console", "identities", "tasks"}
_PASSED_ENV = ("PATH", "HOME", "LANG", "PYTHONPATH")

_READ_EVERY_MODEL = """
import django
django.setup()
from django.apps import apps
for model in apps.get_models():
    list(model.objects.all()[:50])  # every field of every model maps to a column
    print(model._meta.db_table, model.objects.count())
"""


def _manage(database_url: str, data_dir: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
    env.update(
        DATABASE_URL=database_url,
        MANDATE_DATA_DIR=str(data_dir),
        MANDATE_TESTING="1",
        DJANGO_SETTINGS_MODULE="console.settings",
    )
    command = [sys.executable, "-c", code] if code else [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=300)


def _project(rows: list[dict], like: list[dict]) -> list[str]:
    columns = sorted(like[0]) if like else []
    return sorted(repr([row.get(c) for c in columns]) for row in rows)


def _as_dicts(cursor) -> list[dict]:
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _upgrade_and_check(database_url: str, data_dir: Path, snapshot) -> None:
    before = snapshot()
    empty = {table for table, rows in before.items() if not rows and table.split("_")[0] in _PRODUCT_APPS}
    assert not empty, f"the fixture should have rows in every table of the product: {sorted(empty)}"

    migrated = _manage(database_url, data_dir, "migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr

    after = snapshot()
    assert set(before) <= set(after), f"tables gone: {sorted(set(before) - set(after))}"
    for table, rows in before.items():
        if table in _GROWS:
            assert len(after[table]) >= len(rows), table
        else:
            # Compared on the columns the table had: an upgrade may add columns (the audit rows'
            # HMAC, filled by the migration that introduced the audit key) but never change a value.
            assert _project(after[table], rows) == _project(rows, rows), f"rows of {table} changed in the upgrade"

    read = _manage(database_url, data_dir, code=_READ_EVERY_MODEL)
    assert read.returncode == 0, read.stderr
    counts = dict(line.rsplit(" ", 1) for line in read.stdout.split("\n") if line.strip())
    for table in (
        "identities_agent",
        "identities_credential",
        "tasks_taskenvelope",
        "console_auditevent",
        "console_apitoken",
        "tasks_standingexception",
        "identities_trustedissuer",
    ):
        assert int(counts[table]) == len(before[table]) > 0, table

    verified = _manage(database_url, data_dir, "verify_audit_chain")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain intact" in verified.stdout

    pending = _manage(database_url, data_dir, "makemigrations", "--check", "--dry-run")
    assert pending.returncode == 0, "models and migrations disagree:\n" + pending.stdout


def test_a_sqlite_database_from_before_the_layers_upgrades_without_loss(tmp_path):
    import sqlite3

    path = tmp_path / "mandate.sqlite3"
    with gzip.open(FIXTURES / "before-layers.sqlite3.gz") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)

    def snapshot() -> dict[str, list]:
        with sqlite3.connect(path) as db:
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {t: _as_dicts(db.execute(f'SELECT * FROM "{t}"')) for t in tables}

    _upgrade_and_check(f"sqlite:///{path}", tmp_path, snapshot)


@pytest.mark.postgres
def test_a_postgresql_database_from_before_the_layers_upgrades_without_loss(tmp_path):
    import psycopg

    # A scratch database of its own, named after this run's database so parallel runs never collide.
    url = urlsplit(os.environ["DATABASE_URL"])
    name = f"{url.path.lstrip('/')}_upgrade"
    server = urlunsplit(url._replace(path="/postgres"))
    scratch = urlunsplit(url._replace(path=f"/{name}"))
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dump = gzip.decompress((FIXTURES / "before-layers.pg.sql.gz").read_bytes()).decode()
        # psql meta-commands (\restrict …) are not SQL; everything else is plain statements.
        script = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))
        with psycopg.connect(scratch, autocommit=True) as db:
            db.execute(script)

        def snapshot() -> dict[str, list]:
            with psycopg.connect(scratch) as db:
                tables = [name for (name,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
                return {t: _as_dicts(db.execute(f'SELECT * FROM "{t}"')) for t in tables}

        _upgrade_and_check(scratch, tmp_path, snapshot)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
