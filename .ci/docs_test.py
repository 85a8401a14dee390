"""The README, followed verbatim on a fresh clone: ``.ci/docs_test.py CLONE``.

Starts the README's background block (``make run``) in its own process group on a free port, waits
for /healthz, then runs every ``<!-- docs-test -->`` block in order as one script in a clean shell
(``env -i`` with only PATH and HOME, ``bash -e -o pipefail``), the port substituted. Any non-zero exit
fails it (the README's curl calls use ``--fail-with-body``; the decision block exits 1 on a deny).
The background process group is stopped at the end, whatever happened.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_blocks import blocks, with_port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, port: int) -> dict:
    # Nothing from CI's environment leaks in but what a newcomer's shell has: the PATH (which python3
    # they run) and HOME (pip's cache and configuration).
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PORT": str(port), "LANG": "C.UTF-8"}


def up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def main() -> int:
    clone = Path(sys.argv[1]).resolve()
    found = blocks((clone / "README.md").read_text(encoding="utf-8"))
    port = free_port()
    # The runner's own home: pip's cache and configuration there, as on a newcomer's machine.
    env = clean_env(Path(os.environ.get("HOME", "/root")), port)
    background = [b for b in found if b.mode == "background"]
    script = "\n".join(f"# README line {b.line}\n{with_port(b.code, port)}" for b in found if b.mode == "run")
    (clone.parent / "docs-walkthrough.sh").write_text(script)
    started: list[subprocess.Popen] = []
    log = (clone.parent / "make-run.log").open("w")
    try:
        for block in background:
            print(f"starting README line {block.line} in the background (port {port})")
            started.append(
                subprocess.Popen(
                    ["bash", "-e", "-c", with_port(block.code, port)],
                    cwd=clone,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: make, manage.py runall, worker, beat
                )
            )
        deadline = time.monotonic() + 600  # make run installs the virtualenv first
        while not up(port):
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                print("make run did not serve /healthz; its log ends:")
                print("".join((clone.parent / "make-run.log").read_text().splitlines(True)[-40:]))
                return 1
            time.sleep(1)
        print(f"/healthz answers on port {port}; running {sum(b.mode == 'run' for b in found)} README blocks")
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=clone, env=env, timeout=600)
        if done.returncode != 0:
            print(f"the README walkthrough failed (exit {done.returncode}); script: {clone.parent}/docs-walkthrough.sh")
            return 1
        print("the README walkthrough ran verbatim")
        return 0
    finally:
        for process in started:
            try:
                os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: runall stops its children
                process.wait(timeout=30)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
