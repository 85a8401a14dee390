"""gunicorn's configuration for production: `gunicorn -c gunicorn.conf.py` (README, "Running in production").

Everything is overridable by environment variables (HOST, PORT, WEB_CONCURRENCY, WEB_TIMEOUT,
FORWARDED_ALLOW_IPS) or gunicorn's own command-line flags, which win over this file.
"""

import multiprocessing
import os
import shutil
import tempfile

wsgi_app = "console.wsgi:application"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104 (a server)
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then so a slow leak never grows without bound (jitter: not all at once).
max_requests = 5000
max_requests_jitter = 500
# The TLS-terminating proxy in front sets X-Forwarded-Proto; only these peers are believed.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = os.environ.get("ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# Metrics from every worker: prometheus-client's multiprocess mode writes each worker's figures to
# files in this folder, and /metrics adds them up. Emptied at start so a restart begins from zero.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mandate-metrics-")
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
