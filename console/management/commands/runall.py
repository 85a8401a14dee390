"""Run the web console, a Celery worker and Celery beat together; Ctrl-C stops all three."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the console and API with a Celery worker and beat (development and demos)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))

    def handle(self, *args, port: int, host: str, **options):
        python = sys.executable
        env = os.environ.copy()
        commands = {
            "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "console",
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
                "-Q",
                f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.MANDATE_SCHEDULED_QUEUE}",
                "--without-gossip",
                "--without-mingle",
            ],
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "console",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }
        processes = {name: subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR) for name, cmd in commands.items()}
        url = f"http://{host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nMandate is starting on {url}  (API docs: {url}api/docs/)"))
        self.stdout.write(
            "In another shell (no exports needed; see the README's quick start):\n"
            "  .venv/bin/python manage.py add_user ada --role identity-admin"
            "   (password from MANDATE_PASSWORD or asked)\n"
            "  make demo   (demo people and data; prints the logins it set)\n"
            "Press Ctrl-C to stop the web server, the worker and beat.\n"
        )
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        try:
            while not stopping:
                for name, proc in processes.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping the others")
                        exit_code = proc.returncode or 1
                        stopping = True
                        break
                time.sleep(0.5)
        finally:
            for proc in processes.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for proc in processes.values():
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    proc.kill()
        if exit_code:
            sys.exit(exit_code)
