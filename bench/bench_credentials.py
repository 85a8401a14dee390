#!/usr/bin/env python
"""Credential benchmark: mints and introspections through the real endpoints under gunicorn on
PostgreSQL, beside a trivial JSON endpoint of the same server and the raw ES256 rates of this machine.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/bench_credentials.py

It creates a scratch database next to the one DATABASE_URL names (dropped afterwards unless
--keep-db), migrates it, seeds agents, instances (own Ed25519 keys) and approved envelopes, starts
gunicorn on 127.0.0.1, and drives it from a separate load-generator process: persistent HTTP/1.1
connections over raw sockets, one thread each, every client assertion pre-signed (unique jti) before
the clock starts. Each phase is bounded by --duration seconds. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import procstat  # noqa: E402
from limits import use_bench_limits  # noqa: E402

PYTHON = sys.executable
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# --- set-up (runs in the bench process) ----------------------------------------------------------


def scratch_database(base_url: str) -> tuple[str, str, str]:
    """(scratch url, maintenance url, scratch name) for a fresh database beside ``base_url``."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("postgres", "postgresql") or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("DATABASE_URL must name a PostgreSQL server on 127.0.0.1 (the bench creates a scratch database)")
    name = f"mandate_bench_{secrets.token_hex(4)}"
    maintenance = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), maintenance, name


def admin_sql(maintenance_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        conn.execute(sql)


def server_env(database_url: str, port: int, data_dir: str) -> dict:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "MANDATE_TESTING": "0",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "MANDATE_KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "MANDATE_AUDIT_KEY": secrets.token_hex(32),  # required with DEBUG off
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "MANDATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MANDATE_DATA_DIR": data_dir,
            "LOG_LEVEL": "WARNING",
            "DB_CONN_MAX_AGE": "600",
        }
    )
    return env


def seed(agents: int, instances_per_agent: int) -> dict:
    """Runs inside Django (``--seed``): users, agents, instances with keys, approved envelopes."""
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    django.setup()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from django.contrib.auth.models import Group, User
    from jwt.algorithms import OKPAlgorithm

    from accounts.models import ApiToken
    from accounts.roles import AGENT_OWNER, GATEWAY, IDENTITY_ADMIN
    from identities import keys, services
    from tasks import services as task_services

    def user(name, role):
        account = User.objects.create_user(name, f"{name}@bench.test", secrets.token_urlsafe(16))
        account.groups.add(Group.objects.get_or_create(name=role)[0])
        return account

    owner, admin, gateway = user("owner", AGENT_OWNER), user("admin", IDENTITY_ADMIN), user("gateway", GATEWAY)
    secret = ApiToken.new_secret()
    ApiToken.objects.create(user=gateway, name="bench", prefix=secret[:8], digest=ApiToken.digest_of(secret))
    keys.rotate_signing_key(actor=None, immediately=True)
    clients = []
    for a in range(agents):
        agent = services.register_agent(
            actor=owner,
            slug=f"bench-agent-{a}",
            name=f"Bench {a}",
            ceiling=["github:read", "github:write"],
            max_envelope_seconds=8 * 3600,
        )
        agent = services.approve_pending_change(agent=agent, actor=admin)  # the ceiling, by another person
        for _ in range(instances_per_agent):
            private = ed25519.Ed25519PrivateKey.generate()
            jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
            instance = services.register_instance(agent=agent, actor=owner, public_jwk=jwk)
            envelope = task_services.request_envelope(
                actor=owner,
                instance=instance,
                intent="benchmark",
                scopes=["github:read", "github:write"],
                resources=["repo:bench/*"],
                duration_seconds=4 * 3600,
                max_actions=1000,
            )
            task_services.approve_envelope(envelope=envelope, actor=admin)
            pem = private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            clients.append({"spiffe_id": instance.spiffe_id, "envelope": str(envelope.id), "pem": pem})
    return {"gateway_token": secret, "clients": clients}


def raw_es256_rates(seconds: float = 1.5) -> dict:
    """Single-thread ES256 sign and verify rates on this machine, JWT-level (PyJWT, cached key
    objects, a token of the size we mint) and bare (cryptography ECDSA over the same input)."""
    import jwt
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    now = int(time.time())
    claims = {
        "iss": "spiffe://mandate.local",
        "sub": f"spiffe://mandate.local/agent/bench/instance/{uuid.uuid4()}",
        "aud": "mandate",
        "exp": now + 300,
        "iat": now,
        "jti": secrets.token_urlsafe(18),
        "scope": "github:read github:write",
        "envelope": str(uuid.uuid4()),
    }
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k" * 32, "typ": "JWT"})
    message = token.rsplit(".", 1)[0].encode()
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))

    def rate(fn) -> float:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(200):
                fn()
            count += 200
        return count / (time.perf_counter() - start)

    return {
        "jwt_sign": rate(lambda: jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k" * 32, "typ": "JWT"})),
        "jwt_verify": rate(lambda: jwt.decode(token, public, algorithms=["ES256"], audience="mandate")),
        "ecdsa_sign": rate(lambda: key.sign(message, ec.ECDSA(hashes.SHA256()))),
        "ecdsa_verify": rate(lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256()))),
    }


# --- load generator (a separate process: ``--load SPEC``) ----------------------------------------


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if method == "POST":
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """A keep-alive HTTP/1.1 connection that reads one Content-Length-framed response at a time."""

    def __init__(self, port: int):
        self.port = port
        self.sock = None
        self.buffer = b""

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, raw: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(raw)
                return self._read()
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def _read(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        body, self.buffer = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def server_pids(spec: dict) -> dict[str, list[int]]:
    """The gunicorn workers and the PostgreSQL backends serving the scratch database."""
    import psycopg

    master = spec["server_pid"]
    workers = []
    for task in Path(f"/proc/{master}/task").iterdir():
        workers += [int(p) for p in (task / "children").read_text().split()]
    with psycopg.connect(spec["database_url"], autocommit=True) as conn:
        backends = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    return {"django": [master, *workers], "postgres": backends}


def run_phase(
    port: int,
    requests: list[bytes],
    connections: int,
    duration: float,
    keep_bodies: int = 0,
    watch: dict[str, list[int]] | None = None,
    rate: float | None = None,
) -> dict:
    """Send ``requests`` (each used at most once) over ``connections`` threads for ``duration`` s.

    Closed loop by default; with ``rate`` open loop: request *i* is due at ``start + i / rate`` and its
    latency is counted from when it was due, so a stalled server is not hidden by waiting for it."""
    lock = threading.Lock()
    cursor = {"next": 0}
    latencies: list[list[float]] = [[] for _ in range(connections)]
    statuses: dict[int, int] = {}
    bodies: list[bytes] = []
    deadline = time.perf_counter() + duration
    errors = []

    def worker(slot: int):
        conn = Connection(port)
        mine = latencies[slot]
        try:
            while time.perf_counter() < deadline:
                with lock:
                    index = cursor["next"]
                    cursor["next"] += 1
                if index >= len(requests):
                    return
                started = time.perf_counter()
                if rate is not None:
                    due = begun + index / rate
                    if due >= deadline:
                        return
                    if due > started:
                        time.sleep(due - started)
                    started = due
                status, body = conn.exchange(requests[index])
                mine.append(time.perf_counter() - started)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if keep_bodies and len(bodies) < keep_bodies and status == 200:
                        bodies.append(body)
        except Exception as exc:  # reported, never hidden
            errors.append(repr(exc))
        finally:
            conn.close()

    watch = watch or {}
    server_before = {name: procstat.cpu_seconds(pids) for name, pids in watch.items()}
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = begun = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = {name: procstat.cpu_seconds(pids) - server_before[name] for name, pids in watch.items()}
    all_latencies = sorted(x for per in latencies for x in per)
    count = len(all_latencies)

    def pct(p: float) -> float:
        return all_latencies[min(int(p * count), count - 1)] * 1000 if count else float("nan")

    return {
        "count": count,
        "elapsed": elapsed,
        "rate": count / elapsed if elapsed else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(all_latencies) * 1000 if count else 0,
        "statuses": statuses,
        "errors": errors[:3],
        "exhausted": cursor["next"] >= len(requests),
        "loadgen_cpu": (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) / elapsed,
        "cpu_ms_per_request": {name: 1000 * used / count if count else 0.0 for name, used in server_cpu.items()},
        "loadgen_ms_per_request": 1000
        * (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime)
        / count
        if count
        else 0.0,
        "bodies": [b.decode() for b in bodies],
    }


def presign(spec: dict, total: int) -> list[bytes]:
    import jwt
    from cryptography.hazmat.primitives import serialization

    port = spec["port"]
    audience = f"http://127.0.0.1:{port}/oauth/token"
    keys = [serialization.load_pem_private_key(c["pem"].encode(), password=None) for c in spec["clients"]]
    out = []
    now = int(time.time())
    for i in range(total):
        client = spec["clients"][i % len(keys)]
        assertion = jwt.encode(
            {
                "iss": client["spiffe_id"],
                "sub": client["spiffe_id"],
                "aud": audience,
                "iat": now,
                "exp": now + 290,
                "jti": uuid.uuid4().hex,
            },
            keys[i % len(keys)],
            algorithm="EdDSA",
        )
        body = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion,
                "envelope": client["envelope"],
                "scope": "github:read",
            }
        ).encode()
        out.append(_request(port, "POST", "/oauth/token", body))
    return out


def load_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    port, duration, conns = spec["port"], spec["duration"], spec["connections"]
    results = {"runs": []}
    healthz = _request(port, "GET", "/healthz")
    run_phase(port, [healthz] * 2000, conns, 1.0)  # warm every worker and connection
    auth = {"Authorization": f"Bearer {spec['gateway_token']}"}
    for _ in range(spec["runs"]):
        run = {"healthz": run_phase(port, [healthz] * 10_000_000, conns, duration, watch=server_pids(spec))}
        # Signed just before they are used (each assertion is good for a few minutes, once).
        started = time.perf_counter()
        mints = presign(spec, spec["assertions"])
        presign_seconds = time.perf_counter() - started
        run_phase(port, mints[:500], conns, 2.0)  # warm: keys cached, envelopes activated
        rest = mints[500:]
        run["mint"] = run_phase(port, rest, conns, duration, keep_bodies=500, watch=server_pids(spec))
        run["mint"]["presign_seconds"] = presign_seconds
        unused = rest[run["mint"]["count"] + conns :]
        run["mint_half"] = run_phase(
            port, unused, conns, duration, watch=server_pids(spec), rate=run["mint"]["rate"] / 2
        )
        tokens = [json.loads(b)["access_token"] for b in run["mint"].pop("bodies")]
        introspections = [
            _request(port, "POST", "/oauth/introspect", urllib.parse.urlencode({"token": t}).encode(), auth)
            for t in tokens
        ]
        run_phase(port, introspections * 4, conns, 1.0)
        many = introspections * (1 + 10_000_000 // max(len(introspections), 1))
        run["introspect"] = run_phase(port, many, conns, duration, watch=server_pids(spec))
        run["introspect_half"] = run_phase(
            port, many, conns, duration, watch=server_pids(spec), rate=run["introspect"]["rate"] / 2
        )
        for phase in run.values():
            phase.pop("bodies", None)
        results["runs"].append(run)
    print(json.dumps(results))


# --- orchestration -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = Connection(port)
            status, _ = conn.exchange(_request(port, "GET", "/healthz"))
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not become ready")


def main() -> None:
    use_bench_limits()  # thousands of mints per envelope; the servers inherit the environment
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured phase (default 8)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (default 1)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections (default 8)")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--instances", type=int, default=4, help="instances per agent")
    parser.add_argument("--keep-db", action="store_true", help="leave the scratch database for inspection")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (median and spread are reported)")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.seed:
        print(json.dumps(seed(args.agents, args.instances)))
        return
    if args.load:
        load_main(args.load)
        return

    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    database_url, maintenance, name = scratch_database(base)
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="mandate-bench-")
    env = server_env(database_url, port, data_dir)
    admin_sql(maintenance, f'CREATE DATABASE "{name}"')
    server = None
    try:
        print(f"scratch database {name}; migrating and seeding ...", file=sys.stderr)
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = json.loads(
            subprocess.run(
                [PYTHON, __file__, "--seed", "--agents", str(args.agents), "--instances", str(args.instances)],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )

        print("measuring raw ES256 rates ...", file=sys.stderr)
        raw = raw_es256_rates()

        worker_class = "gthread"
        server = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "console.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--worker-class",
                worker_class,
                "--threads",
                str(args.threads),
                "--keep-alive",
                "60",
                "--log-level",
                "warning",
                # gunicorn.conf.py in the working folder is read too: its worker recycling (max_requests)
                # closes kept-alive connections mid-run, and its access log would write a line per request.
                "--max-requests",
                "0",
                "--access-logfile",
                "/dev/null",
                "--backlog",
                "2048",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        wait_ready(port)

        expected = int(args.duration * 6000) + 1000  # a full-load phase, then half of it at half the rate
        spec = {
            "port": port,
            "duration": args.duration,
            "connections": args.connections,
            "assertions": expected,
            "runs": args.runs,
            "server_pid": server.pid,
            "database_url": database_url,
            **seeded,
        }
        spec_path = Path(data_dir) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        print(f"load: {args.connections} connections, {args.duration:.0f} s per phase ...", file=sys.stderr)
        load = subprocess.run(
            [PYTHON, __file__, "--load", str(spec_path)], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        results = json.loads(load.stdout.strip().splitlines()[-1])
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if not args.keep_db:
            admin_sql(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    report(args, raw, results)


def table_rows(results: dict) -> list:
    import report as shared

    def figures(run: dict, name: str) -> dict:
        full, half, health = run[name], run[f"{name}_half"], run["healthz"]
        cpu = full["cpu_ms_per_request"]
        return {
            "rate": full["rate"],
            "full_p50": full["p50_ms"],
            "full_p99": full["p99_ms"],
            "half_p50": half["p50_ms"],
            "half_p99": half["p99_ms"],
            "server_cpu_ms": cpu.get("django", float("nan")),
            "postgres_cpu_ms": cpu.get("postgres", float("nan")),
            "healthz_rate": health["rate"],
            "healthz_server_cpu_ms": health["cpu_ms_per_request"].get("django", float("nan")),
        }

    def health(run: dict) -> dict:
        h = run["healthz"]
        return {
            "rate": h["rate"],
            "full_p50": h["p50_ms"],
            "full_p99": h["p99_ms"],
            "server_cpu_ms": h["cpu_ms_per_request"].get("django", float("nan")),
            "postgres_cpu_ms": h["cpu_ms_per_request"].get("postgres", float("nan")),
            "healthz_rate": h["rate"],
            "healthz_server_cpu_ms": h["cpu_ms_per_request"].get("django", float("nan")),
        }

    runs = results["runs"]
    return [
        shared.Row("GET /healthz", [health(r) for r in runs], "baseline"),
        shared.Row(
            "POST /oauth/token (mint)",
            [figures(r, "mint") for r in runs],
            "rate >= 0.35x /healthz, p99 half <= 25 ms",
            lambda m: m["ratio"] >= 0.35 and m["half_p99"] <= 25,
        ),
        shared.Row(
            "POST /oauth/introspect",
            [figures(r, "introspect") for r in runs],
            "rate >= 0.5x /healthz",
            lambda m: m["ratio"] >= 0.5,
        ),
    ]


def report(args, raw: dict, results: dict) -> None:
    import report as shared

    rows = table_rows(results)
    shared.save_runs(rows, label="credentials")
    print()
    print(shared.table(rows, title="credentials"))
    last = results["runs"][-1]
    print()
    print("The last run in detail:")
    health, mint, intro = last["healthz"], last["mint"], last["introspect"]
    print()
    print(
        f"Mandate credential benchmark — {os.cpu_count()} CPUs, gunicorn {args.workers} workers x "
        f"{args.threads} thread(s), {args.connections} keep-alive connections, {args.duration:.0f} s per phase, "
        f"PostgreSQL"
    )
    print()
    header = f"{'endpoint':<28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs /healthz':>13}{'loadgen CPU':>13}  statuses"
    print(header)
    print("-" * len(header))
    for label, phase in (
        ("GET /healthz (trivial JSON)", health),
        ("POST /oauth/token (mint)", mint),
        ("POST /oauth/introspect", intro),
    ):
        ratio = phase["rate"] / health["rate"] if health["rate"] else float("nan")
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(phase["statuses"].items(), key=lambda kv: str(kv[0])))
        print(
            f"{label:<28}{phase['rate']:>9.0f}{phase['p50_ms']:>9.2f}{phase['p99_ms']:>9.2f}{ratio:>13.2f}"
            f"{phase['loadgen_cpu']:>12.0%}  {statuses}"
        )
        if phase["errors"] or phase["exhausted"]:
            print(f"    note: errors={phase['errors']} exhausted={phase['exhausted']}")
    print()
    print("CPU per request, load-independent (the machine may be shared with other work):")
    print(
        f"{'endpoint':<28}{'django ms':>11}{'postgres ms':>13}{'loadgen ms':>12}{'total ms':>10}"
        f"{'req/s on 2 idle cores':>24}"
    )
    for label, phase in (
        ("GET /healthz", health),
        ("POST /oauth/token (mint)", mint),
        ("POST /oauth/introspect", intro),
    ):
        cpu = phase["cpu_ms_per_request"]
        total = cpu.get("django", 0.0) + cpu.get("postgres", 0.0) + phase["loadgen_ms_per_request"]
        ceiling = 2000 / total if total else float("nan")
        print(
            f"{label:<28}{cpu.get('django', 0.0):>11.2f}{cpu.get('postgres', 0.0):>13.2f}"
            f"{phase['loadgen_ms_per_request']:>12.2f}{total:>10.2f}{ceiling:>24.0f}"
        )
    print()
    print(f"{'raw ES256, one thread':<28}{'ops/s':>9}{'mint/s as share':>18}{'introspect/s as share':>24}")
    for label, key, against in (
        ("PyJWT sign (cached key)", "jwt_sign", mint),
        ("PyJWT verify (cached key)", "jwt_verify", intro),
        ("ECDSA P-256 sign", "ecdsa_sign", mint),
        ("ECDSA P-256 verify", "ecdsa_verify", intro),
    ):
        share = against["rate"] / raw[key]
        column = f"{share:>18.2f}{'':>24}" if against is mint else f"{'':>18}{share:>24.2f}"
        print(f"{label:<28}{raw[key]:>9.0f}{column}")
    print()
    target_ok = mint["rate"] >= 1500 and mint["p99_ms"] <= 10
    print(
        f"target >= 1500 mints/s with p99 <= 10 ms: {'met' if target_ok else 'NOT met'} "
        f"({mint['rate']:.0f}/s, p99 {mint['p99_ms']:.2f} ms); assertions pre-signed in "
        f"{mint['presign_seconds']:.1f} s before timing"
    )


if __name__ == "__main__":
    main()
