#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    from console.development import load_development_settings

    load_development_settings(Path(__file__).resolve().parent)
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # Settings refuse to start (e.g. no SECRET_KEY with DEBUG off): say so in one line, not a traceback.
        sys.exit(
            f"Mandate is not configured: {exc}.\n"
            "For development, run `make install` or `make run` once (they record DEBUG=true in "
            "data/development.env for later commands); in production, set the variables in the README's "
            "configuration table."
        )


if __name__ == "__main__":
    main()
