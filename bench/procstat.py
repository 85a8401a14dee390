"""CPU seconds of processes on this machine, read from ``/proc``, for the benches: the server's
workers, PostgreSQL's backends and WAL writer, the load generator. (Linux; the database server
must run on this machine for its processes to be counted.)"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    """utime + stime of these processes (one that has exited counts nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def run_seconds(pids) -> float:
    """Time these processes have spent on a CPU, in seconds, to the nanosecond (``schedstat``'s first
    field): fine enough to time a few requests, where ``cpu_seconds`` counts in clock ticks."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):  # one that has exited counts nothing
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return total / 1e9


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def postgres_pids(database: str | None = None) -> list[int]:
    """PostgreSQL's WAL writer, and with ``database`` the backends serving that database (other
    databases on the same server are not ours to count)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "walwriter" in title or (database is not None and f" {database} " in title):
                pids.append(int(entry.name))
    return pids
