"""The development settings `make run` chose, for commands started in another shell.

`make run` writes ``data/development.env`` (``DEBUG=true``, the port it serves on). `manage.py` and
the Celery app read it only when ``DEBUG`` is not in the environment, so `manage.py add_user` in a
second shell talks to the same development database without any exports. The WSGI entry point
never reads it: a stray file cannot turn a production server into a development one.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_NAME = "development.env"
_KNOWN = frozenset({"DEBUG", "PORT"})


def development_file(base_dir: Path) -> Path:
    return Path(os.environ.get("MANDATE_DATA_DIR") or base_dir / "data") / FILE_NAME


def load_development_settings(base_dir: Path) -> None:
    """Apply the file's values where the environment says nothing; do nothing without the file."""
    if "DEBUG" in os.environ:
        return
    try:
        text = development_file(base_dir).read_text()
    except OSError:
        return
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name in _KNOWN:
            os.environ.setdefault(name, value.strip())
