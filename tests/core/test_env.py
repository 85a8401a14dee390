"""The typed env helpers fail loudly, naming the variable, instead of guessing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_int, env_list, env_str


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "tru"])
def test_a_boolean_that_is_not_one_refuses_and_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("MANDATE_X", value)
    with pytest.raises(ImproperlyConfigured, match="MANDATE_X"):
        env_bool("MANDATE_X", False)


@pytest.mark.parametrize(
    ("value", "expected"), [("TRUE", True), ("on", True), ("0", False), ("no", False), ("", False)]
)
def test_booleans_read_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("MANDATE_X", value)
    assert env_bool("MANDATE_X", not expected) is expected


@pytest.mark.parametrize("value", ["ten", "1.5", "0x10", "60s"])
def test_a_number_that_is_not_whole_refuses(monkeypatch, value):
    monkeypatch.setenv("MANDATE_N", value)
    with pytest.raises(ImproperlyConfigured, match=r"MANDATE_N.*whole number"):
        env_int("MANDATE_N", 1)


def test_a_number_below_its_minimum_refuses(monkeypatch):
    monkeypatch.setenv("MANDATE_N", "0")
    with pytest.raises(ImproperlyConfigured, match="minimum of 1"):
        env_int("MANDATE_N", 5, minimum=1)


def test_unset_variables_take_their_defaults(monkeypatch):
    for name in ("MANDATE_A", "MANDATE_A_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert env_str("MANDATE_A", "d") == "d"
    assert env_int("MANDATE_A", 7) == 7
    assert env_bool("MANDATE_A", True) is True
    assert env_list("MANDATE_A", ["x"]) == ["x"]


def test_lists_are_comma_separated_and_trimmed(monkeypatch):
    monkeypatch.setenv("MANDATE_L", " a.example , b.example,,")
    assert env_list("MANDATE_L", []) == ["a.example", "b.example"]


def test_a_secret_is_read_from_its_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("MANDATE_S_FILE", str(secret))
    assert env_str("MANDATE_S") == "s3cret"


def test_an_unreadable_secret_file_refuses(monkeypatch, tmp_path):
    monkeypatch.setenv("MANDATE_S_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="MANDATE_S_FILE"):
        env_str("MANDATE_S")


def _start(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("MANDATE_TESTING", "DEBUG", "SECRET_KEY")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=clean, capture_output=True, text=True, timeout=60
    )


def test_with_debug_off_start_up_refuses_a_missing_secret_key():
    result = _start(DEBUG="false", MANDATE_KEY_ENCRYPTION_KEYS="x" * 44, DJANGO_SETTINGS_MODULE="console.settings")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_with_debug_off_start_up_refuses_the_development_secret_key():
    result = _start(
        DEBUG="false",
        SECRET_KEY="dev-insecure-secret-key-do-not-use-in-production",
        MANDATE_KEY_ENCRYPTION_KEYS="x" * 44,
        DJANGO_SETTINGS_MODULE="console.settings",
    )
    assert result.returncode != 0 and "development default" in result.stderr


def test_a_bad_sweep_interval_stops_start_up_naming_it():
    result = _start(DEBUG="true", MANDATE_SWEEP_CREDENTIALS_SECONDS="soon", DJANGO_SETTINGS_MODULE="console.settings")
    assert result.returncode != 0 and "MANDATE_SWEEP_CREDENTIALS_SECONDS" in result.stderr


def test_sweep_intervals_come_from_the_environment_and_expire_before_the_next_run():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "e = s.CELERY_BEAT_SCHEDULE['expire-overdue-credentials']; "
        "print(e['schedule'].run_every.total_seconds(), e['options']['expires'], e['options']['queue'])"
    )
    clean = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    clean.update(MANDATE_TESTING="1", MANDATE_SWEEP_CREDENTIALS_SECONDS="7", DJANGO_SETTINGS_MODULE="console.settings")
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=60)
    every, expires, queue = out.stdout.split()
    assert float(every) == 7 and 0 < float(expires) < 7 and queue == "scheduled"
