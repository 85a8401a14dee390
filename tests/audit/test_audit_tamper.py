"""Evidence against someone who holds the database but not the deployment's secrets.

The application's role cannot change evidence (triggers, on PostgreSQL for any role but the owner,
on SQLite for any connection without the explicit bypass); rows carry an HMAC under a key the
database never sees; signed checkpoints in an external file let an auditor detect a truncated
chain, a deleted chain and a rewritten-and-recomputed chain without trusting the server.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit import keys as audit_keys
from audit import services as audit
from audit.checkpoints import Reason, deliver_pending, write_checkpoint
from audit.guard import NotOwner, evidence_bypass
from audit.models import AuditChain, AuditCheckpoint, AuditEvent, AuditJti, AuditSigningKey
from tasks import lifecycle
from tasks.models import ActivityEvent
from tests.helpers.factories import as_database_owner, make_agent
from tools import verify_audit

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


# --- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def app_role():
    """Act as the application's role: on PostgreSQL a role that does not own the tables — granted
    even UPDATE, DELETE and TRUNCATE on purpose, to show the triggers hold regardless; on SQLite a
    connection without the bypass (there are no roles)."""
    if connection.vendor != "postgresql":
        yield None
        return
    role = f"mandate_app_{connection.settings_dict['NAME']}"[:63]
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN')  # rolled back with the test's transaction
        cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        cursor.execute(f'SET LOCAL ROLE "{role}"')
    yield role


def refused(sql: str, params=()) -> str:
    """Run ``sql`` in a savepoint; the database's refusal message (the test fails if it succeeds)."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(caught.value)


def agent_with_history(owner, *, slug="bot", rows=10):
    """An agent whose chain has ``rows`` rows."""
    agent = make_agent(owner, slug=slug)
    while AuditChain.objects.get(key=f"agent:{agent.id}").length < rows:
        lifecycle.pause_agent(agent=agent, actor=owner)
        lifecycle.resume_agent(agent=agent, actor=owner)
    return agent


def export_jsonl(api_client, admin, path: Path) -> Path:
    response = api_client.as_user(admin).get("/api/v1/audit/export?format=jsonl")
    path.write_bytes(b"".join(response.streaming_content))
    return path


def keys_file(client, path: Path) -> Path:
    path.write_text(client.get("/.well-known/mandate-audit-keys.json").content.decode())
    return path


def offline(rows: Path, checkpoints: Path, keys: Path, capsys) -> tuple[int, str]:
    code = verify_audit.main(["--rows", str(rows), "--checkpoints", str(checkpoints), "--keys", str(keys)])
    return code, capsys.readouterr().out


def server_verify(checkpoints: Path) -> str:
    """``verify_audit_chain --checkpoints FILE``: '' when intact, else the error naming the first bad row."""
    try:
        call_command("verify_audit_chain", "--checkpoints", str(checkpoints), stdout=io.StringIO())
    except CommandError as exc:
        if exc.returncode != 1:
            raise
        return str(exc)
    return ""


# --- 1. append-only in the database ------------------------------------------------------------------


@pytest.mark.parametrize("statement", ["UPDATE {t} SET reason = 'rewritten'", "DELETE FROM {t}"])
def test_the_application_role_cannot_update_or_delete_audit_rows(owner, app_role, statement):
    make_agent(owner)
    table = AuditEvent._meta.db_table
    assert "append-only" in refused(statement.format(t=table))
    assert AuditEvent.objects.filter(reason="rewritten").count() == 0


@pytest.mark.parametrize("model", [ActivityEvent, AuditJti])
def test_the_application_role_cannot_update_or_delete_activity_or_the_jti_index(owner, admin, app_role, model):
    agent = make_agent(owner)
    ActivityEvent.objects.create(kind="tool_call", agent=agent, scope="github:read", resource="repo")
    event = AuditEvent.objects.first()
    AuditJti.objects.create(jti="jti-1", event=event)
    table = model._meta.db_table
    assert "append-only" in refused(f"UPDATE {table} SET id = id")
    assert "append-only" in refused(f"DELETE FROM {table}")
    assert model.objects.count() == 1


@pytest.mark.postgres
def test_the_application_role_cannot_truncate_evidence(owner, app_role):
    if connection.vendor != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's")
    make_agent(owner)
    for model in (AuditEvent, AuditChain, ActivityEvent, AuditJti):
        assert "append-only" in refused(f"TRUNCATE {model._meta.db_table} CASCADE")


def test_a_chain_head_moves_forward_only_and_cannot_be_deleted(owner, app_role):
    agent = make_agent(owner)
    key = f"agent:{agent.id}"
    head = AuditChain.objects.get(key=key)
    assert "forward" in refused(f"UPDATE {AuditChain._meta.db_table} SET length = length - 1 WHERE key = %s", [key])
    assert "append-only" in refused(f"DELETE FROM {AuditChain._meta.db_table} WHERE key = %s", [key])
    # Appending (which advances the head) still works for the application's role.
    lifecycle.pause_agent(agent=agent, actor=owner)
    assert AuditChain.objects.get(key=key).length == head.length + 1
    assert audit.verify_chain().ok


@pytest.mark.postgres
def test_the_application_role_cannot_take_the_bypass(app_role):
    if connection.vendor != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    with pytest.raises(NotOwner), evidence_bypass(reason="an attempt"):
        pass
    with pytest.raises(CommandError) as caught:
        call_command("purge_audit", "--before", "2020-01-01", "--yes")
    assert "owns the tables" in str(caught.value)


def test_deleting_a_user_keeps_the_evidence_of_what_they_did(owner, admin, django_user_model):
    agent = make_agent(owner)
    lifecycle.pause_agent(agent=agent, actor=admin)
    event = AuditEvent.objects.get(verb="agent.paused")
    admin_id = admin.pk
    django_user_model.objects.filter(pk=admin_id).delete()
    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor, event.actor_user_id) == ("ada", admin_id)
    assert audit.verify_chain().ok


# --- 2. keyed chain ----------------------------------------------------------------------------------


def test_a_row_rewritten_and_rehashed_without_the_key_is_named_by_the_server(owner):
    agent = agent_with_history(owner, rows=12)
    fifth = AuditEvent.objects.get(chain=f"agent:{agent.id}", seq=5)
    _rewrite_and_recompute(f"agent:{agent.id}", 5)
    result = audit.verify_chain()
    assert not result.ok and result.first_bad["id"] == fifth.id and "MAC" in result.first_bad["problem"]


def test_key_rotation_keeps_old_rows_verifiable(owner, settings):
    old_key = settings.MANDATE_AUDIT_KEYS[0]
    agent = make_agent(owner)
    new_key = "a-new-audit-key-" + "x" * 40
    settings.MANDATE_AUDIT_KEYS = [new_key, old_key]
    audit_keys.key_ring.cache_clear()
    try:
        lifecycle.pause_agent(agent=agent, actor=owner)
        ids = set(AuditEvent.objects.values_list("key_id", flat=True))
        assert ids == {audit_keys.key_id_of(old_key.encode()), audit_keys.key_id_of(new_key.encode())}
        assert audit.verify_chain().ok
        settings.MANDATE_AUDIT_KEYS = [new_key]  # the old key dropped: its rows can no longer be checked
        audit_keys.key_ring.cache_clear()
        result = audit.verify_chain()
        assert not result.ok and "not in MANDATE_AUDIT_KEY" in result.first_bad["problem"]
    finally:
        audit_keys.key_ring.cache_clear()


def test_the_audit_key_is_never_stored_in_the_database(owner, settings):
    make_agent(owner)
    secret = settings.MANDATE_AUDIT_KEYS[0]
    for event in AuditEvent.objects.all():
        assert secret not in json.dumps([event.key_id, event.mac, event.after, event.before])


# --- 3. signed checkpoints ---------------------------------------------------------------------------


def test_a_checkpoint_is_signed_committed_then_appended_and_an_idle_run_writes_nothing(owner, checkpoint_file):
    make_agent(owner)
    first = write_checkpoint(reason=Reason.SCHEDULED)
    assert first is not None and first.sunk_at is None  # the row as committed, before delivery
    assert AuditCheckpoint.objects.get(seq=first.seq).sunk_at is not None
    assert write_checkpoint(reason=Reason.SCHEDULED) is None  # nothing moved: idempotent
    make_agent(owner, slug="second")
    second = write_checkpoint(reason=Reason.SCHEDULED)
    lines = [json.loads(line) for line in checkpoint_file.read_text().splitlines()]
    assert [line["checkpoint"]["seq"] for line in lines] == [first.seq, second.seq]
    assert lines[1]["checkpoint"]["prev"] == first.digest
    keys = verify_audit.load_public_keys({"keys": [audit_keys.public_jwk(k) for k in AuditSigningKey.objects.all()]})
    folded, problem = verify_audit.verify_checkpoints(lines, keys)
    assert problem is None and set(folded.state) == set(AuditChain.objects.values_list("key", flat=True))


def test_the_beat_job_writes_a_checkpoint(owner, settings, checkpoint_file):
    from console.celery import app

    make_agent(owner)
    entry = settings.CELERY_BEAT_SCHEDULE["write-audit-checkpoint"]
    app.loader.import_default_modules()
    app.tasks[entry["task"]].delay()
    assert AuditCheckpoint.objects.filter(reason="scheduled").count() == 1
    assert checkpoint_file.read_text().count("\n") == 1


def test_the_command_writes_a_checkpoint_and_says_so(owner, checkpoint_file, capsys):
    make_agent(owner)
    call_command("write_audit_checkpoint")
    out = capsys.readouterr().out
    assert "checkpoint #1 signed" in out and "every checkpoint is in the sink" in out


def test_an_unavailable_sink_shows_on_readyz_without_a_503_and_on_the_audit_page(
    owner, auditor, settings, client, monkeypatch
):
    from console import health

    monkeypatch.setattr(health, "_broker_ok", lambda: True)
    settings.MANDATE_AUDIT_CHECKPOINT_FILE = "/nonexistent-folder/audit-checkpoints.jsonl"
    make_agent(owner)
    write_checkpoint(reason=Reason.SCHEDULED)
    ready = client.get("/readyz")
    sink = ready.json()["details"]["audit_sink"]
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert sink["ok"] is False and sink["undelivered"] == 1 and "nonexistent-folder" in sink["error"]
    client.force_login(auditor)
    page = client.get("/audit/").content.decode()
    assert 'id="audit-sink-failing"' in page and "nonexistent-folder" in page
    with pytest.raises(CommandError):
        call_command("write_audit_checkpoint", stdout=io.StringIO())


def test_readyz_sink_failure_alone_is_not_a_503(settings, client, monkeypatch):
    from console import health

    monkeypatch.setattr(health, "_broker_ok", lambda: True)
    settings.MANDATE_AUDIT_CHECKPOINT_FILE = ""
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json()["details"]["audit_sink"]["ok"] is False


def test_an_undelivered_checkpoint_is_delivered_once_the_sink_is_back(owner, settings, tmp_path):
    settings.MANDATE_AUDIT_CHECKPOINT_FILE = str(tmp_path / "missing" / "file.jsonl")
    make_agent(owner)
    write_checkpoint(reason=Reason.SCHEDULED)
    (tmp_path / "missing").mkdir()
    assert deliver_pending() == 1
    assert AuditCheckpoint.objects.get().sink_error == ""


def test_audit_public_keys_have_their_own_document_never_the_credential_jwks(owner, client):
    make_agent(owner)
    write_checkpoint(reason=Reason.COMMAND)
    audit_kid = AuditSigningKey.objects.get().kid
    document = client.get("/.well-known/mandate-audit-keys.json").json()
    assert [k["kid"] for k in document["keys"]] == [audit_kid] and document["keys"][0]["crv"] == "Ed25519"
    assert "d" not in document["keys"][0]
    assert audit_kid not in client.get("/.well-known/jwks.json").content.decode()


def test_auditors_list_checkpoints_and_keys_in_the_api_and_owners_cannot(owner, auditor, api_client):
    make_agent(owner)
    write_checkpoint(reason=Reason.COMMAND)
    rows = api_client.as_user(auditor).get("/api/v1/audit/checkpoints").json()
    assert [r["seq"] for r in rows] == [1] and rows[0]["checkpoint"]["reason"] == "command"
    assert rows[0]["delivered_at"] is not None
    assert api_client.as_user(auditor).get("/api/v1/audit/keys").json()["keys"][0]["kty"] == "OKP"
    assert api_client.as_user(owner).get("/api/v1/audit/checkpoints").status_code == 403
    assert api_client.as_user(auditor).get("/api/v1/audit/checkpoints?limit=0").status_code == 400


# --- 4. offline verification: the three rewrites -----------------------------------------------------


@pytest.fixture
def trail(owner, admin, api_client, client, tmp_path, checkpoint_file):
    """Two agents with history, a checkpoint in the external file, the pinned public keys."""
    victim = agent_with_history(owner, slug="victim", rows=20)
    bystander = agent_with_history(owner, slug="bystander", rows=6)
    write_checkpoint(reason=Reason.SCHEDULED)
    return {
        "victim": f"agent:{victim.id}",
        "bystander": f"agent:{bystander.id}",
        "keys": keys_file(client, tmp_path / "keys.json"),
        "checkpoints": checkpoint_file,
        "export": lambda: export_jsonl(api_client, admin, tmp_path / "audit.jsonl"),
    }


def test_an_intact_trail_verifies_offline_and_on_the_server(trail, capsys):
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 0 and "audit trail intact" in out
    assert server_verify(trail["checkpoints"]) == ""


def test_rows_after_the_newest_checkpoint_need_the_server(trail, owner, capsys):
    lifecycle.pause_agent(agent=_agent(trail), actor=owner)
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 0 and "1 row(s) after the newest checkpoint" in out and "verify_audit_chain" in out


def test_deleting_the_last_five_rows_and_the_heads_is_detected(trail, capsys):
    chain = trail["victim"]
    head = AuditChain.objects.get(key=chain)
    keep = AuditEvent.objects.get(chain=chain, seq=head.length - 5)
    with as_database_owner():
        AuditEvent.objects.filter(chain=chain, seq__gt=keep.seq).delete()
        AuditChain.objects.filter(key=chain).update(length=keep.seq, last_hash=keep.hash)
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 1 and f"chain={chain}" in out and "deleted from the end" in out
    assert "deleted from the end" in server_verify(trail["checkpoints"])


def test_deleting_a_whole_chain_and_its_head_is_detected(trail, capsys):
    chain = trail["bystander"]
    with as_database_owner():
        AuditEvent.objects.filter(chain=chain).delete()
        AuditChain.objects.filter(key=chain).delete()
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 1 and f"chain={chain}" in out and "whole chain was deleted" in out
    assert "whole chain was deleted" in server_verify(trail["checkpoints"])


def test_rewriting_row_5_and_recomputing_every_later_hash_and_the_head_is_detected(trail, capsys):
    chain = trail["victim"]
    _rewrite_and_recompute(chain, 5)
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    # Offline, without the key: the recomputed hashes no longer meet the signed checkpoint.
    assert code == 1 and f"chain={chain}" in out and "differs from checkpoint #1" in out
    # The server, with the key, names row 5 itself.
    assert f"chain={chain} seq=5" in server_verify(trail["checkpoints"])


def test_a_forged_checkpoint_is_refused(trail, capsys):
    lines = trail["checkpoints"].read_text().splitlines()
    record = json.loads(lines[-1])
    record["checkpoint"]["chains"][trail["victim"]]["length"] -= 5  # make a truncation look signed
    trail["checkpoints"].write_text("\n".join([*lines[:-1], json.dumps(record)]) + "\n")
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 1 and "checkpoint #1" in out and "forged" in out
    assert "forged" in server_verify(trail["checkpoints"])


def test_a_checkpoint_signed_by_a_key_the_auditor_did_not_pin_is_refused(trail, tmp_path, capsys):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    record = json.loads(trail["checkpoints"].read_text().splitlines()[-1])
    impostor = Ed25519PrivateKey.generate()
    record["kid"] = record["checkpoint"]["kid"] = "audit-impostor"
    record["signature"] = audit_keys.b64u(impostor.sign(verify_audit.checkpoint_bytes(record["checkpoint"])))
    trail["checkpoints"].write_text(json.dumps(record) + "\n")
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 1 and "not trusted" in out


def test_a_gap_in_the_checkpoints_is_detected(trail, owner, capsys):
    for slug in ("third", "fourth"):
        make_agent(owner, slug=slug)
        write_checkpoint(reason=Reason.SCHEDULED)
    lines = trail["checkpoints"].read_text().splitlines()
    assert len(lines) == 3
    trail["checkpoints"].write_text("\n".join([lines[0], lines[2]]) + "\n")
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 1 and "checkpoint #3" in out and "#2 missing" in out


def test_the_standalone_verifier_runs_without_django(trail, tmp_path):
    script = ROOT / "tools" / "verify_audit.py"
    # An auditor's machine has no Django: make importing it fail, then run the script as a program.
    probe = (
        "import runpy, sys; sys.modules['django'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )

    def run() -> subprocess.CompletedProcess:
        args = [
            "--rows",
            str(trail["export"]()),
            "--checkpoints",
            str(trail["checkpoints"]),
            "--keys",
            str(trail["keys"]),
        ]
        env = {"PATH": os.environ.get("PATH", "")}
        return subprocess.run(
            [sys.executable, "-I", "-c", probe, str(script), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )

    done = run()
    assert done.returncode == 0 and "audit trail intact" in done.stdout, done.stdout + done.stderr
    _rewrite_and_recompute(trail["victim"], 5)
    done = run()
    assert done.returncode == 1 and "AUDIT TRAIL BROKEN" in done.stdout, done.stdout + done.stderr


def test_the_evidence_export_manifest_names_its_covering_checkpoint(trail, admin, settings, tmp_path):
    from posture import export

    settings.DATA_DIR = tmp_path
    job = export.start_export(user=admin, kind="audit", fmt="jsonl")
    job = export.run_export(job.id)
    manifest = json.loads((tmp_path / "exports" / f"{job.file_name}.manifest.json").read_text())
    covering = manifest["audit_checkpoint"]
    assert covering["checkpoint"]["seq"] == AuditCheckpoint.objects.order_by("-seq").first().seq
    # It covers the export's rows, and its signature holds under the pinned keys.
    covered = covering["checkpoint"]["chains"] or json.loads(AuditCheckpoint.objects.get(seq=1).body)["chains"]
    assert trail["victim"] in covered or covering["checkpoint"]["seq"] > 1
    keys = verify_audit.load_public_keys(json.loads(trail["keys"].read_text()))
    keys[covering["kid"]].verify(
        verify_audit._b64u_decode(covering["signature"]), verify_audit.checkpoint_bytes(covering["checkpoint"])
    )


# --- retention -----------------------------------------------------------------------------------------


def test_the_purge_checkpoints_first_deletes_old_rows_and_is_audited(trail, owner, capsys):
    old, chain_agent = timezone.now() - timedelta(days=400), uuid.uuid4()
    with transaction.atomic():
        for i in range(10):  # eight rows from last year, then two from today
            audit.record(
                "note.kept", actor=owner, target=("note", i, "a note"), agent_id=chain_agent, at=old if i < 8 else None
            )
    chain = f"agent:{chain_agent}"
    cutoff = (timezone.now() - timedelta(days=300)).date().isoformat()

    call_command("purge_audit", "--before", cutoff)  # without --yes: only counts
    assert "would delete 8 audit row(s)" in capsys.readouterr().out
    call_command("purge_audit", "--before", cutoff, "--yes")
    assert "purged 8 audit row(s) from 1 chain(s)" in capsys.readouterr().out

    assert list(AuditEvent.objects.filter(chain=chain).values_list("seq", flat=True).order_by("seq")) == [9, 10]
    purged = AuditEvent.objects.get(verb="audit.purged")
    assert purged.after["audit_rows"] == 8 and purged.after["chains"] == {chain: {"floor": 8}}
    checkpoints = list(AuditCheckpoint.objects.order_by("seq"))
    # One checkpoint before anything was deleted, one recording the new floor.
    assert [c.reason for c in checkpoints[-2:]] == ["command", "purge"]
    assert json.loads(checkpoints[-2].body)["chains"][chain]["length"] == 10
    assert json.loads(checkpoints[-1].body)["chains"][chain]["floor"] == 8
    assert all(c.sunk_at is not None for c in checkpoints)
    assert audit.verify_chain().ok
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 0, out


def test_the_purge_refuses_a_future_cutoff():
    with pytest.raises(CommandError):
        call_command("purge_audit", "--before", (timezone.now() + timedelta(days=2)).date().isoformat(), "--yes")


def test_a_purge_disguised_as_tampering_is_detected(trail, capsys):
    """Deleting a chain's oldest rows without the purge command leaves no signed floor."""
    with as_database_owner():
        AuditEvent.objects.filter(chain=trail["victim"], seq__lte=3).delete()
    code, out = offline(trail["export"](), trail["checkpoints"], trail["keys"], capsys)
    assert code == 1 and "missing before seq 4" in out


# --- tampering helpers ------------------------------------------------------------------------------------


def _agent(trail):
    from identities.models import Agent

    return Agent.objects.get(id=trail["victim"].split(":", 1)[1])


def _rewrite_and_recompute(chain: str, seq: int) -> None:
    """What someone holding only the database can do: change a row, recompute every later plain
    hash and the head. They cannot recompute the MACs (the key is not in the database)."""
    with as_database_owner():
        row = AuditEvent.objects.get(chain=chain, seq=seq)
        AuditEvent.objects.filter(pk=row.pk).update(reason="nothing to see here")
        prev = row.prev_hash
        for event in AuditEvent.objects.filter(chain=chain, seq__gte=seq).order_by("seq"):
            digest = audit.compute_hash(prev, event)
            AuditEvent.objects.filter(pk=event.pk).update(prev_hash=prev, hash=digest)
            prev = digest
        AuditChain.objects.filter(key=chain).update(last_hash=prev)


# --- the migration that introduced the key ------------------------------------------------------------


def _reanchor():
    import importlib

    from django.apps import apps

    importlib.import_module("audit.migrations.0002_keyed_checkpoints").reanchor(apps, None)


def test_rows_written_before_the_key_existed_are_re_anchored_with_a_recorded_checkpoint(owner, checkpoint_file):
    make_agent(owner)
    make_agent(owner, slug="second")
    with as_database_owner():  # as the previous release left them: plain hashes, no MAC
        AuditEvent.objects.update(key_id="", mac="")
    assert not audit.verify_chain().ok
    _reanchor()
    checkpoint = AuditCheckpoint.objects.get()
    assert checkpoint.reason == "re-anchor"
    assert json.loads(checkpoint.body)["chains"] == {
        head.key: {"length": head.length, "last_hash": head.last_hash} for head in AuditChain.objects.all()
    }
    assert audit.verify_chain().ok
    deliver_pending()
    assert server_verify(checkpoint_file) == ""


def test_the_re_anchoring_refuses_to_bless_a_chain_already_broken(owner):
    make_agent(owner)
    with as_database_owner():
        AuditEvent.objects.update(key_id="", mac="")
        AuditEvent.objects.filter(verb="agent.created").update(reason="rewritten before the upgrade")
    with pytest.raises(RuntimeError, match="broken"):
        _reanchor()
    assert not AuditCheckpoint.objects.exists()


def test_the_standalone_verifier_hashes_exactly_what_the_server_hashes(owner):
    """tools/verify_audit.py cannot import the server's code, so it carries its own copy of the
    canonical form: the two must agree on every row, bulk rows and chunk events included."""
    agent = agent_with_history(owner, rows=6)
    with transaction.atomic():
        audit.record_many(
            "note.bulk",
            actor=owner,
            target_type="note",
            targets=[(agent.id, "n1", "ünïcode label"), (None, "n2", "")],
            after={"nested": {"b": [1, 2.5, None]}, "a": "x"},
        )
    for event in AuditEvent.objects.all():
        row = {f.attname: getattr(event, f.attname) for f in AuditEvent._meta.concrete_fields}
        assert verify_audit.canonical(row) == audit._canonical(event), event.verb
        assert verify_audit.row_hash(event.prev_hash, row) == event.hash
