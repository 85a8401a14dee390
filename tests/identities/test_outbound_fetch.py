"""The outbound client (core/outbound.py) that fetches trusted issuers' discovery documents and keys
(#15): https to public addresses only, checked after resolution and connected to as checked, no
redirects, one deadline for the whole fetch, a size cap.

Nothing here leaves this machine: name resolution is stubbed, and the suite's ``_loopback_only``
fixture fails any test that connects anywhere but loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

from core import outbound
from core.outbound import OutboundFailed, OutboundRefused
from identities.models_oidc import TrustedIssuer
from tests.helpers.factories import make_agent

pytestmark = pytest.mark.django_db


class RawServer:
    """A one-thread HTTP server on a loopback address that answers every request with ``reply``
    (a callable writing to the socket), recording what it was asked and how far it got."""

    def __init__(self, reply, host: str = "127.0.0.1"):
        self.reply = reply
        self.requests: list[str] = []
        self.finished = threading.Event()
        self.sent = 0
        self._stop = threading.Event()
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self.host = host
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self._listener.settimeout(0.1)
        while True:
            try:
                conn, _ = self._listener.accept()
                break
            except TimeoutError:
                if self._stop.is_set():
                    return
            except OSError:
                return
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data.decode("latin-1"))
            with contextlib.suppress(OSError):  # the client hung up
                self.reply(self, conn)
        self.finished.set()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()


def json_reply(document: dict):
    def reply(server, conn):
        body = json.dumps(document).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        conn.sendall(body)
        server.sent = len(body)

    return reply


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.MANDATE_OUTBOUND_ALLOW = []
    return settings


@pytest.fixture
def development(settings):
    settings.DEBUG = True
    return settings


class Names(dict):
    """A stub resolver's table (name -> addresses) that counts lookups."""

    def __init__(self):
        super().__init__()
        self.lookups: list[str] = []

    def resolve(self, host, port):
        self.lookups.append(host)
        if host not in self:
            raise OSError(f"unknown name {host}")
        return self[host]


@pytest.fixture
def names(monkeypatch):
    """Stub name resolution: ``names["issuer.example"] = ["203.0.113.7"]``."""
    table = Names()
    monkeypatch.setattr(outbound, "resolve", table.resolve)
    return table


# --- addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fe80::1]/x", "link-local"),
        ("https://10.0.0.1/.well-known/openid-configuration", "private"),
        ("https://192.168.1.20/", "private"),
        ("https://127.0.0.2/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://224.0.0.1/", "multicast"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://100.64.0.1/", "not a public address"),
        ("http://oidc.example/", "https"),
        ("http://127.0.0.1:8080/", "https"),
        ("ftp://oidc.example/", "https"),
        ("https://user:pw@oidc.example/", "user info"),
    ],
)
def test_private_metadata_and_loopback_addresses_are_refused_in_production(production, url, says):
    with pytest.raises(OutboundRefused, match=says):
        outbound.fetch_json(url)


@pytest.mark.parametrize("addresses", [["10.0.0.7"], ["169.254.169.254"], ["203.0.113.7", "127.0.0.1"], ["fd00::1"]])
def test_a_name_resolving_to_any_refused_address_is_refused_before_connecting(production, names, addresses):
    names["issuer.example"] = addresses
    with pytest.raises(OutboundRefused, match=r"issuer\.example resolves to"):
        outbound.fetch_json("https://issuer.example/.well-known/openid-configuration")


def test_registering_an_issuer_at_a_refused_address_is_a_400_and_saves_nothing(
    production, names, api_client, admin, owner
):
    make_agent(owner, slug="invoice-triage")
    names["internal.example"] = ["10.20.30.40"]
    client = api_client.as_user(admin)
    rules = [{"agent": "invoice-triage", "claims": {"sub": "x"}}]
    for issuer in (
        "https://169.254.169.254",
        "https://10.0.0.1",
        "https://127.0.0.2",
        "http://127.0.0.1:8080",
        "https://internal.example",
    ):
        response = client.post(
            "/api/v1/issuers/",
            {"name": issuer[-20:], "issuer": issuer, "audience": "mandate", "rules": rules},
            format="json",
        )
        assert response.status_code == 400, (issuer, response.content)
        assert "issuer" in response.json(), response.json()
    assert not TrustedIssuer.objects.exists()


def test_the_checked_address_is_the_one_connected_to_with_the_name_as_host(development, names):
    server = RawServer(json_reply({"ok": True}))
    names["issuer.example"] = ["127.0.0.1"]
    try:
        assert outbound.fetch_json(f"http://issuer.example:{server.port}/doc") == {"ok": True}
    finally:
        server.close()
    assert names.lookups == ["issuer.example"]  # resolved once: no second answer to rebind to
    assert server.requests[0].startswith("GET /doc HTTP/1.1")
    assert f"host: issuer.example:{server.port}" in server.requests[0].lower()


def test_loopback_in_production_only_through_the_allow_list(production):
    server = RawServer(json_reply({"ok": True}))
    try:
        with pytest.raises(OutboundRefused):
            outbound.fetch_json(f"http://127.0.0.1:{server.port}/doc")
        production.MANDATE_OUTBOUND_ALLOW = [f"127.0.0.1:{server.port}"]
        assert outbound.fetch_json(f"http://127.0.0.1:{server.port}/doc") == {"ok": True}
    finally:
        server.close()


def test_development_allows_loopback_but_not_private_addresses(development, names):
    names["lan.example"] = ["192.168.0.10"]
    with pytest.raises(OutboundRefused, match="private"):
        outbound.fetch_json("https://lan.example/")
    with pytest.raises(OutboundRefused, match="loopback only"):
        outbound.fetch_json("http://203.0.113.9/")


# --- redirects, deadline, size ---------------------------------------------------------------------


def test_a_redirect_is_never_followed(development):
    elsewhere = RawServer(json_reply({"reached": True}), host="127.0.0.2")

    def redirect(server, conn):
        location = f"http://127.0.0.2:{elsewhere.port}/jwks"
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())

    origin = RawServer(redirect)
    try:
        with pytest.raises(OutboundFailed, match="redirect"):
            outbound.fetch_json(f"http://127.0.0.1:{origin.port}/.well-known/openid-configuration")
    finally:
        origin.close()
        elsewhere.close()
    assert elsewhere.requests == []


def test_an_issuer_whose_discovery_redirects_is_saved_without_keys_and_the_target_never_reached(
    development, admin, owner
):
    from identities import oidc

    make_agent(owner, slug="invoice-triage")
    elsewhere = RawServer(json_reply({"keys": []}), host="127.0.0.2")

    def redirect(server, conn):
        conn.sendall(
            f"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.2:{elsewhere.port}/\r\nContent-Length: 0\r\n\r\n".encode()
        )

    origin = RawServer(redirect)
    try:
        row = oidc.create_issuer(
            actor=admin,
            name="redirecting",
            issuer=f"http://127.0.0.1:{origin.port}",
            audience="mandate",
            rules=[{"agent": "invoice-triage", "claims": {"sub": "x"}}],
        )
    finally:
        origin.close()
        elsewhere.close()
    assert "redirect" in row.keys_error and row.fetched_jwks is None
    assert elsewhere.requests == []


def test_a_slow_drip_is_cut_at_the_total_deadline(development):
    development.MANDATE_OUTBOUND_DEADLINE_SECONDS = 0.5
    body = b'{"keys": []}' + b" " * 88

    def drip(server, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:  # one byte every 0.2 s: each read is quick, the whole would take 20 s
            conn.sendall(bytes([byte]))
            server.sent += 1
            time.sleep(0.2)

    server = RawServer(drip)
    try:
        with pytest.raises(OutboundFailed, match=r"within 0\.5 s"):
            outbound.fetch_json(f"http://127.0.0.1:{server.port}/jwks")
        assert server.finished.wait(timeout=30)
    finally:
        server.close()
    assert server.sent < len(body)  # the client hung up long before the body was complete


def test_slow_headers_are_cut_at_the_total_deadline(development):
    development.MANDATE_OUTBOUND_DEADLINE_SECONDS = 0.5
    release = threading.Event()

    def stall(server, conn):
        release.wait(timeout=20)

    server = RawServer(stall)
    try:
        with pytest.raises(OutboundFailed, match=r"within 0\.5 s"):
            outbound.fetch_json(f"http://127.0.0.1:{server.port}/jwks")
    finally:
        release.set()
        server.close()


def test_the_size_cap_is_kept(development):
    def huge(server, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        conn.sendall(b'{"keys": "' + b"a" * (outbound.MAX_BYTES + 10) + b'"}')

    server = RawServer(huge)
    try:
        with pytest.raises(OutboundFailed, match="larger than"):
            outbound.fetch_json(f"http://127.0.0.1:{server.port}/jwks")
    finally:
        server.close()


def test_a_connect_anywhere_but_loopback_fails_the_test(development):
    with pytest.raises(pytest.fail.Exception, match="only loopback"):
        socket.create_connection(("203.0.113.1", 443), timeout=0.1)


# --- TLS: the checked address, the name's certificate ----------------------------------------------


def _certificate_for(name: str, tmp_path):
    """A throwaway CA and a server certificate for ``name`` it signed: (server context, CA file)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def build(subject, issuer, key, signer, *, ca: bool, san=None):
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", "test CA", ca_key, ca_key, ca=True)
    server = build(name, "test CA", server_key, ca_key, ca=False, san=name)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem")
    return context, str(tmp_path / "ca.pem")


@pytest.mark.parametrize(("certified", "ok"), [("issuer.example", True), ("someone-else.example", False)])
def test_https_goes_to_the_checked_address_and_verifies_the_names_certificate(
    development, names, monkeypatch, tmp_path, certified, ok
):
    import ssl

    server_context, ca_file = _certificate_for(certified, tmp_path)
    seen_names: list[str] = []
    server_context.sni_callback = lambda sock, name, ctx: seen_names.append(name)

    def tls_reply(server, conn):
        with server_context.wrap_socket(conn, server_side=True) as tls:
            json_reply({"ok": True})(server, tls)

    class TlsServer(RawServer):
        def _serve(self):  # the TLS handshake comes before the request
            self._listener.settimeout(10)
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                try:
                    with server_context.wrap_socket(conn, server_side=True) as tls:
                        data = tls.recv(4096)
                        self.requests.append(data.decode("latin-1"))
                        json_reply({"ok": True})(self, tls)
                except (OSError, ssl.SSLError):
                    pass
            self.finished.set()

    server = TlsServer(tls_reply)
    names["issuer.example"] = ["127.0.0.1"]
    monkeypatch.setattr(outbound, "_tls_verify", lambda: ssl.create_default_context(cafile=ca_file))
    try:
        if ok:
            assert outbound.fetch_json(f"https://issuer.example:{server.port}/doc") == {"ok": True}
            assert f"host: issuer.example:{server.port}" in server.requests[0].lower()
        else:
            with pytest.raises(OutboundFailed):
                outbound.fetch_json(f"https://issuer.example:{server.port}/doc")
            assert server.requests == []
    finally:
        server.close()
    assert seen_names == ["issuer.example"]  # SNI names the host, though the connection went to 127.0.0.1


def test_a_fetch_works_from_code_already_running_an_event_loop(development):
    import asyncio

    server = RawServer(json_reply({"ok": True}))

    async def inside_a_loop():
        return outbound.fetch_json(f"http://127.0.0.1:{server.port}/doc")

    try:
        assert asyncio.run(inside_a_loop()) == {"ok": True}
    finally:
        server.close()
