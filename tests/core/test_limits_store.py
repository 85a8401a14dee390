"""Where limits are counted: one trusted-proxy rule for client addresses, and a counter store every
process shares (Redis or the database cache; never per-process memory outside the test suite)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.test import RequestFactory, override_settings

from core import ratelimit, sql
from core.client_address import client_address


def request_from(peer: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


# --- client addresses ------------------------------------------------------------------------------


def test_without_trusted_proxies_the_socket_address_is_the_client(settings):
    settings.MANDATE_TRUSTED_PROXIES = []
    assert client_address(request_from("203.0.113.9", "192.0.2.1")) == "203.0.113.9"


def test_a_forwarded_header_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(settings):
    settings.MANDATE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(request_from("203.0.113.9", "192.0.2.1")) == "203.0.113.9"


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_address(settings):
    settings.MANDATE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(request_from("10.0.0.5", "192.0.2.1")) == "192.0.2.1"


def test_addresses_a_client_prepends_to_the_header_are_ignored(settings):
    # The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the address it saw.
    settings.MANDATE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(request_from("10.0.0.5", "1.1.1.1, 192.0.2.1")) == "192.0.2.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(settings):
    settings.MANDATE_TRUSTED_PROXIES = ["10.0.0.0/8", "2001:db8::/32"]
    assert client_address(request_from("10.0.0.5", "1.1.1.1, 192.0.2.1, 2001:db8::7, 10.9.9.9")) == "192.0.2.1"


def test_garbage_in_the_header_stops_at_the_last_hop_a_trusted_proxy_vouched_for(settings):
    settings.MANDATE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(request_from("10.0.0.5", "not-an-address")) == "10.0.0.5"
    assert client_address(request_from("10.0.0.5", "")) == "10.0.0.5"


def test_a_bad_trusted_proxy_setting_stops_start_up_naming_it(tmp_path):
    env = {**os.environ, "MANDATE_TESTING": "1", "MANDATE_TRUSTED_PROXIES": "10.0.0.0/8,not-a-cidr"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; settings.INSTALLED_APPS"],
        env={**env, "DJANGO_SETTINGS_MODULE": "console.settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "MANDATE_TRUSTED_PROXIES" in result.stderr and "not-a-cidr" in result.stderr


# --- which store -----------------------------------------------------------------------------------


def _cache_backend(**env_overrides) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MANDATE_CACHE_URL", "CELERY_BROKER_URL", "MANDATE_TESTING")
    }
    env.update({"DEBUG": "true", "DJANGO_SETTINGS_MODULE": "console.settings", **env_overrides})
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_outside_tests_the_store_is_the_database_cache_by_default():
    assert _cache_backend() == "django.core.cache.backends.db.DatabaseCache"


def test_a_redis_broker_makes_redis_the_store():
    assert _cache_backend(CELERY_BROKER_URL="redis://127.0.0.1:6379/0").endswith("RedisCache")


def test_mandate_cache_url_names_the_store():
    assert _cache_backend(MANDATE_CACHE_URL="redis://127.0.0.1:6379/3").endswith("RedisCache")


def test_a_cache_url_that_is_not_redis_stops_start_up():
    with pytest.raises(subprocess.CalledProcessError):
        _cache_backend(MANDATE_CACHE_URL="memcached://127.0.0.1:11211")


DB_CACHE = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "mandate_cache"}}


@pytest.mark.django_db(transaction=True)
def test_on_the_database_cache_every_connection_counts_against_the_same_limit():
    """Two threads (two database connections, as two processes would have) share one count."""
    with override_settings(CACHES=DB_CACHE):
        call_command("createcachetable", verbosity=0)
        caches["default"].clear()
        results = []

        def hit_once():
            results.append(ratelimit.hit("test", "203.0.113.9", per_window=3, window=3600, now=7200.0))
            from django.db import connection

            connection.close()

        for _ in range(3):
            worker = threading.Thread(target=hit_once)
            worker.start()
            worker.join()
        assert results == [None, None, None]
        refused = ratelimit.hit("test", "203.0.113.9", per_window=3, window=3600, now=7200.0)
        assert refused is not None and refused.retry_after == 3600
        caches["default"].clear()


@contextlib.contextmanager
def redis_store(prefix: str):
    """Django's cache on the local Redis, under a key prefix of this process's own; the test is
    skipped, saying so, when no Redis answers."""
    redis = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
            "KEY_PREFIX": f"{prefix}-{os.getpid()}",
        }
    }
    with override_settings(CACHES=redis):
        cache = caches["default"]
        try:
            cache._cache.get_client(None).ping()
        except Exception:
            pytest.skip("no Redis on 127.0.0.1:6379")
        yield cache


@pytest.mark.redis
def test_on_redis_the_count_is_atomic_and_expires_with_its_window():
    with redis_store("mandate-test") as cache:
        key = f"key-{os.getpid()}"
        results = []
        threads = [
            # One window whenever the test runs: on the clock, 15 hits could straddle a minute.
            threading.Thread(
                target=lambda: results.append(ratelimit.hit("t", key, per_window=10, window=60, now=7230.0))
            )
            for _ in range(15)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r is not None for r in results) == 5
        assert all(r.retry_after == 30 for r in results if r is not None)
        cache.clear()


@pytest.mark.redis
def test_on_redis_several_limits_are_counted_in_one_round_trip():
    with redis_store("mandate-test-pair") as cache:
        address, caller = ("pair-address", "203.0.113.9", 2), ("pair-caller", "user-7", 3)
        try:
            at = {"window": 60, "now": 7200.0}  # one window, whenever the test runs
            assert ratelimit.hit_all([address, caller], **at) is None
            assert ratelimit.hit_all([address, caller], **at) is None
            assert ratelimit.hit_all([caller, address], **at).limit == 2  # the caller's 3rd is within its limit
            assert ratelimit.hit_all([caller, address], **at).limit == 3
            assert ratelimit.hit("pair-caller", "user-8", per_window=1, **at) is None  # a neighbour
        finally:
            cache.clear()


def test_a_limit_of_zero_is_off():
    assert all(ratelimit.hit("off", "k", per_window=0) is None for _ in range(100))


@pytest.mark.django_db
def test_the_window_says_how_long_until_it_ends():
    for _ in range(2):
        ratelimit.hit("w", "k2", per_window=2, window=60, now=120.0)
    refused = ratelimit.hit("w", "k2", per_window=2, window=60, now=135.2)
    assert refused is not None and refused.retry_after == 45
    assert ratelimit.hit("w", "k2", per_window=2, window=60, now=180.0) is None  # the next window


# --- the database's counter (no Redis) -------------------------------------------------------------


def _counts():
    from console.models import RateCounter

    return sorted((c.slot, c.n) for c in RateCounter.objects.all())


@pytest.mark.django_db
def test_a_counted_hit_is_one_statement(django_assert_num_queries):
    ratelimit.hit("one", "203.0.113.9", per_window=5, window=60, now=600.0)  # the window's first hit
    with django_assert_num_queries(1):
        assert ratelimit.hit("one", "203.0.113.9", per_window=5, window=60, now=601.0) is None


@pytest.mark.django_db
def test_several_limits_are_counted_in_one_statement_and_each_keeps_its_own_count(django_assert_num_queries):
    address, caller = ("pair-address", "203.0.113.9", 3), ("pair-caller", "user-7", 5)
    ratelimit.hit_all([address, caller], window=60, now=600.0)  # the window's first hits
    with django_assert_num_queries(1):
        assert ratelimit.hit_all([address, caller], window=60, now=601.0) is None
    assert _counts() == [(10, 2), (10, 2)]

    assert ratelimit.hit_all([address, caller], window=60, now=602.0) is None  # 3 of 3, 3 of 5
    refused = ratelimit.hit_all([address, caller], window=60, now=603.0)
    assert refused is not None and refused.limit == 3  # the first limit used up, in the order given
    refused = ratelimit.hit_all([caller, address], window=60, now=604.0)
    assert refused is not None and refused.limit == 3  # the caller's 5th hit is within its limit
    refused = ratelimit.hit_all([caller, address], window=60, now=605.0)
    assert refused is not None and refused.limit == 5  # both used up: the first named answers
    assert ratelimit.hit("pair-caller", "user-8", per_window=5, window=60, now=606.0) is None  # a neighbour
    assert ratelimit.hit_all([("off", "k", 0), ("pair-caller", "user-9", 1)], window=60, now=607.0) is None
    assert sorted(n for _, n in _counts()) == [1, 1, 6, 6]  # a limit of 0 is not counted


def _instance_read():
    from identities.models import Instance

    return sql.PreparedValues(
        lambda pk: Instance.objects.filter(pk=pk).order_by().values_list("id", "agent__slug", "status"),
        sample=uuid.UUID(int=0),
        head=("asked", lambda: "%s"),
    )


@pytest.mark.django_db
def test_a_read_rides_on_the_count_and_answers_what_a_fetch_answers(owner, django_assert_num_queries):
    """hit_all_and_fetch: the counts exactly as hit_all counts them, and the row exactly as the read's
    own fetch gives it (its head column too), in one statement on PostgreSQL; with no row, None."""
    from django.db import connection

    from tests.helpers.factories import make_agent, make_instance

    instance = make_instance(make_agent(owner))
    read = _instance_read()
    expected = {**read.fetch(instance.pk, head_params=["yes"])}
    address, caller = ("ride-address", "203.0.113.9", 2), ("ride-caller", "user-7", 5)
    ratelimit.hit_all([address, caller], window=60, now=600.0)  # the window's first hits

    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        exceeded, row = ratelimit.hit_all_and_fetch(
            [address, caller], ratelimit.Read(read, instance.pk, ["yes"]), window=60, now=601.0
        )
    assert exceeded is None and row == expected

    exceeded, row = ratelimit.hit_all_and_fetch(
        [address, caller], ratelimit.Read(read, uuid.uuid4(), ["yes"]), window=60, now=602.0
    )
    assert exceeded is not None and exceeded.limit == 2 and row is None  # counted, refused, nothing found
    assert _counts() == [(10, 3), (10, 3)]

    exceeded, row = ratelimit.hit_all_and_fetch(
        [("off", "k", 0)], ratelimit.Read(read, instance.pk, ["no"]), window=60, now=603.0
    )
    assert exceeded is None and row == {**expected, "asked": "no"}  # nothing to count: the read alone


@pytest.mark.redis
@pytest.mark.django_db
def test_on_redis_the_read_follows_the_count(owner):
    from tests.helpers.factories import make_agent, make_instance

    instance = make_instance(make_agent(owner))
    read = _instance_read()
    with redis_store("mandate-test-ride") as cache:
        try:
            limit = ("ride-redis", "203.0.113.9", 1)
            at = {"window": 60, "now": 7200.0}
            assert ratelimit.hit_all_and_fetch([limit], ratelimit.Read(read, instance.pk, ["a"]), **at) == (
                None,
                read.fetch(instance.pk, head_params=["a"]),
            )
            exceeded, row = ratelimit.hit_all_and_fetch([limit], ratelimit.Read(read, instance.pk, ["b"]), **at)
            assert exceeded is not None and row["asked"] == "b"
        finally:
            cache.clear()


@pytest.mark.django_db
def test_a_new_window_starts_from_zero_and_forgets_the_old_one():
    for _ in range(3):
        ratelimit.hit("roll", "k", per_window=3, window=60, now=600.0)
    assert ratelimit.hit("roll", "k", per_window=3, window=60, now=659.9) is not None  # 4th in window 10
    assert _counts() == [(10, 4)]

    assert ratelimit.hit("roll", "k", per_window=3, window=60, now=660.0) is None  # window 11
    assert _counts() == [(11, 1)]  # the old window went with the new one's first hit


@pytest.mark.django_db
def test_the_sweep_deletes_ended_windows_of_keys_that_never_came_back():
    ratelimit.hit("gone", "a", per_window=3, window=60, now=600.0)  # window [600, 660)
    ratelimit.hit("gone", "b", per_window=3, window=60, now=700.0)  # window [660, 720)
    assert ratelimit.sweep(now=659.0) == 0
    assert ratelimit.sweep(now=660.0) == 1
    assert _counts() == [(11, 1)]
    assert ratelimit.hit("gone", "b", per_window=1, window=60, now=701.0) is not None  # still counted


def test_the_sweep_runs_on_the_beat():
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["sweep-rate-counts"]["task"] == "console.jobs.sweep_rate_counts"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_hits_on_postgresql_are_each_counted_exactly_once():
    """Twelve connections hit one key 25 times each at once: 300 hits, counts 1 to 300 each seen by
    exactly one caller, and the limit lets exactly its 250 through."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    seen, refused, lock = [], [], threading.Lock()
    barrier = threading.Barrier(12)

    def worker():
        from django.db import connection as conn

        try:
            barrier.wait()
            for _ in range(25):
                count = sql.count_hits(["race:k"], 1, expires=2)["race:k"]
                outcome = ratelimit.hit("race", "k", per_window=250, window=3600, now=7200.0)
                with lock:
                    seen.append(count)
                    refused.append(outcome is not None)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 301))
    assert refused.count(True) == 50


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_counts_of_the_same_keys_in_either_order_never_deadlock_on_postgresql():
    """Eight connections count two keys together 25 times each, half naming them in the other order:
    the rows are locked in one order whatever the caller's, so PostgreSQL never has to abort one,
    and each key is counted exactly 200 times."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    errors, barrier = [], threading.Barrier(8)
    pair = [("race-a", "k", 10_000), ("race-b", "k", 10_000)]

    def worker(order):
        from django.db import connection as conn

        try:
            barrier.wait()
            for _ in range(25):
                ratelimit.hit_all(order, window=3600, now=7200.0)
        except Exception as exc:  # a deadlock would surface here
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(pair if n % 2 else pair[::-1],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _counts() == [(2, 200), (2, 200)]
