"""The project's WSGI application with every request and every garbage collection timed, per worker.

For ``bench/tail_probe.py`` only (never in production): gunicorn serves ``timed_wsgi:application``
with bench/ on PYTHONPATH, and each worker appends to ``$MANDATE_TIMING_DIR/req-<pid>.log``:

    REQ <start epoch s> <wall s> cpu=<thread CPU s> act=<requests in this worker at start> th=<thread> <path>
    GC  <start epoch s> <wall s> gen=<generation> collected=<objects>
"""

import gc
import os
import threading
import time

from console.wsgi import application as _inner

_DIR = os.environ.get("MANDATE_TIMING_DIR", "/tmp")
_files: dict[int, object] = {}
_active = [0]
_lock = threading.Lock()
_gc_started: dict[int, float] = {}


def _out():
    pid = os.getpid()
    f = _files.get(pid)
    if f is None:
        f = _files[pid] = open(os.path.join(_DIR, f"req-{pid}.log"), "a", buffering=1 << 16)  # noqa: SIM115
    return f


def _on_gc(phase, info):
    if phase == "start":
        _gc_started[threading.get_ident()] = time.time()
        return
    started = _gc_started.pop(threading.get_ident(), None)
    if started is not None:
        _out().write(
            f"GC {started:.6f} {time.time() - started:.6f} gen={info['generation']} collected={info['collected']}\n"
        )


gc.callbacks.append(_on_gc)
_last_flush = [0.0]


def application(environ, start_response):
    t0, c0 = time.time(), time.thread_time()
    with _lock:
        _active[0] += 1
        active = _active[0]
    try:
        return _inner(environ, start_response)
    finally:
        with _lock:
            _active[0] -= 1
        f = _out()
        f.write(
            f"REQ {t0:.6f} {time.time() - t0:.6f} cpu={time.thread_time() - c0:.6f} act={active} "
            f"th={threading.get_ident()} {environ['PATH_INFO']}\n"
        )
        if time.time() - _last_flush[0] > 0.5:
            f.flush()
            _last_flush[0] = time.time()
