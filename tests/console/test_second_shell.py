"""`make run` in one shell, `manage.py …` in another: the README's second step, with no exports."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings

_DROPPED = ("MANDATE_TESTING", "DEBUG", "SECRET_KEY", "DATABASE_URL", "MANDATE_KEY_ENCRYPTION_KEYS", "PORT")


def _shell(data_dir, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """A fresh shell: none of the test run's exports, only the data folder `make run` used."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env["MANDATE_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-c", code] if code else [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def _as_make_run_left_it(data_dir, port: int = 8123) -> None:
    data_dir.mkdir(exist_ok=True)
    (data_dir / "development.env").write_text(f"DEBUG=true\nPORT={port}\n")


def test_add_user_in_a_second_shell_works_after_make_run(tmp_path):
    data = tmp_path / "data"
    _as_make_run_left_it(data)
    assert _shell(data, "migrate", "--noinput", "-v", "0").returncode == 0
    result = _shell(data, "add_user", "ada", "--role", "identity-admin")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    check = _shell(
        data,
        code=(
            "import os, sys; sys.argv = ['manage.py']; from pathlib import Path; "
            "from console.development import load_development_settings; load_development_settings(Path('.')); "
            "import django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'console.settings'); django.setup(); "
            "from django.contrib.auth.models import User; print(User.objects.get(username='ada').groups.get().name)"
        ),
    )
    assert check.stdout.strip() == "identity-admin", check.stderr


def test_make_install_alone_lets_manage_py_run_in_a_second_shell(tmp_path):
    """`make test` (or `make install`) without `make run`: a checkout set up by the README's commands
    is a development checkout, so `manage.py` works in a shell with no exports."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env["MANDATE_DATA_DIR"] = str(data)
    made = subprocess.run(
        ["make", "-s", "install"], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=600
    )
    assert made.returncode == 0, made.stderr
    assert (data / "development.env").read_text() == "DEBUG=true\nPORT=8000\n"
    result = _shell(data, "check")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout

    # A file `make run` wrote (its port) is left as it is.
    _as_make_run_left_it(data, port=9123)
    assert subprocess.run(["make", "-s", "install"], cwd=settings.BASE_DIR, env=env, timeout=600).returncode == 0
    assert (data / "development.env").read_text() == "DEBUG=true\nPORT=9123\n"


def test_without_make_run_the_same_command_still_refuses_to_start_in_production_mode(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    result = _shell(data, "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr and "make run" in result.stderr


def test_an_environment_debug_wins_over_the_file(tmp_path):
    data = tmp_path / "data"
    _as_make_run_left_it(data)
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(MANDATE_DATA_DIR=str(data), DEBUG="false")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_the_wsgi_entry_point_never_reads_the_development_file(tmp_path):
    data = tmp_path / "data"
    _as_make_run_left_it(data)
    result = _shell(data, code="import console.wsgi")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
