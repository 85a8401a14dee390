"""Fixtures shared by every test: one user per role, plus a second owner and a second admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.models import ApiToken
from accounts.roles import AGENT_OWNER, AUDITOR, GATEWAY, IDENTITY_ADMIN


def pytest_collection_modifyitems(config, items):
    """Tests marked ``postgres`` need PostgreSQL itself (real parallel transactions, which SQLite
    serialises, or a PostgreSQL dump): on any other database they are skipped, saying why."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="marked postgres: needs PostgreSQL (run with DATABASE_URL=postgres://…)")
    for item in items:
        if item.get_closest_marker("postgres") is not None:
            item.add_marker(skip)


def _user(django_user_model, username: str, *roles: str):
    user = django_user_model.objects.create_user(
        username=username, email=f"{username}@example.test", password="correct horse battery staple"
    )
    for role in roles:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user


@pytest.fixture
def owner(django_user_model):
    return _user(django_user_model, "olivia", AGENT_OWNER)


@pytest.fixture
def other_owner(django_user_model):
    return _user(django_user_model, "oscar", AGENT_OWNER)


@pytest.fixture
def admin(django_user_model):
    return _user(django_user_model, "ada", IDENTITY_ADMIN)


@pytest.fixture
def second_admin(django_user_model):
    return _user(django_user_model, "alan", IDENTITY_ADMIN)


@pytest.fixture
def auditor(django_user_model):
    return _user(django_user_model, "audrey", AUDITOR)


@pytest.fixture
def gateway(django_user_model):
    return _user(django_user_model, "gate", GATEWAY)


@pytest.fixture
def api_client():
    """A DRF client; ``api_client.as_user(user)`` sends a real Bearer API token for that user."""
    from rest_framework.test import APIClient

    class TokenClient(APIClient):
        def as_user(self, user):
            secret = ApiToken.new_secret()
            ApiToken.objects.create(user=user, name="test", prefix=secret[:8], digest=ApiToken.digest_of(secret))
            client = TokenClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
            return client

    return TokenClient()


@pytest.fixture(autouse=True, scope="session")
def _flush_as_the_database_owner():
    """Transactional tests end with Django's flush, which deletes evidence rows: the one place the
    suite bypasses the append-only triggers, explicitly (on PostgreSQL the suite is the owner)."""
    from django.db.backends.base.operations import BaseDatabaseOperations

    from audit.guard import evidence_bypass

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        with evidence_bypass(reason="test suite: flush between tests", connection=self.connection):
            return original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = original


def _loopback(address) -> bool:
    import ipaddress

    if not isinstance(address, tuple):  # a Unix socket path
        return True
    try:
        return ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        return str(address[0]) == "localhost"


@pytest.fixture(autouse=True)
def _loopback_only(settings, monkeypatch):
    """No test talks to anything but this machine: a connect to any other address fails the test,
    and outbound name resolution (core.outbound.resolve) knows only ``localhost`` unless a test
    stubs it. Outbound allow-list entries a test adds (a LocalIssuer does) end with the test."""
    import socket

    from core import outbound

    settings.MANDATE_OUTBOUND_ALLOW = []

    def guarded(original):
        def connect(sock, address, *args, **kwargs):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
                pytest.fail(f"a test tried to connect to {address!r}: only loopback is allowed")
            return original(sock, address, *args, **kwargs)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(socket.socket.connect_ex))

    def resolve(host: str, port: int) -> list[str]:
        if host == "localhost":
            return ["127.0.0.1"]
        raise OSError(f"name resolution is stubbed in tests: {host} is unknown")

    monkeypatch.setattr(outbound, "resolve", resolve)


@pytest.fixture(autouse=True)
def checkpoint_file(settings, tmp_path):
    """Each test's audit checkpoints go to its own file, never the shared data folder."""
    settings.MANDATE_AUDIT_CHECKPOINT_FILE = str(tmp_path / "audit-checkpoints.jsonl")
    return tmp_path / "audit-checkpoints.jsonl"


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Signing keys, the tokens verified with them and the API callers remembered are cached per
    process; each test's database starts without them."""
    from accounts.authentication import forget_all_api_callers
    from identities import keys
    from tasks import decisions

    keys._invalidate()
    decisions.clear_verification_cache()
    forget_all_api_callers()
    yield
    keys._invalidate()
    decisions.clear_verification_cache()
    forget_all_api_callers()


@pytest.fixture
def policy_dir(settings, tmp_path):
    """A writable copy of the default policy that this test's process runs; edit it with
    ``policy_dir.replace(file, old, new)`` or ``policy_dir.write(file, text)``."""
    import shutil
    from pathlib import Path

    from tasks.policy import reset_policy_cache

    class PolicyDir:
        def __init__(self, path: Path):
            self.path = path

        def write(self, name: str, text: str) -> None:
            (self.path / name).write_text(text)
            reset_policy_cache()

        def replace(self, name: str, old: str, new: str) -> None:
            text = (self.path / name).read_text()
            assert old in text, f"{old!r} is not in {name}"
            self.write(name, text.replace(old, new))

    path = tmp_path / "policy"
    shutil.copytree(Path(settings.BASE_DIR) / "policy", path)
    settings.MANDATE_POLICY_DIR = str(path)  # the setting_changed receiver forgets the cached policy
    return PolicyDir(path)


@pytest.fixture(autouse=True)
def _fresh_counters():
    """Rate-limit counters live in the cache; under tests that is this process's local memory
    (settings), so each test starts with none counted."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    cache = caches["default"]
    if isinstance(cache, LocMemCache):  # never flush a shared Redis someone pointed the tests at
        cache.clear()
