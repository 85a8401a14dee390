import csv
import io
import json
import tracemalloc
from datetime import timedelta

import pytest
from django.utils import timezone

from posture import export
from posture.models import ExportJob
from tasks.models import ActivityEvent
from tests.helpers.factories import make_agent, make_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    return tmp_path


def _activity(agent, n, *, at=None):
    at = at or timezone.now() - timedelta(hours=1)
    ActivityEvent.objects.bulk_create(
        [
            ActivityEvent(
                kind=ActivityEvent.Kind.DECISION,
                agent=agent,
                scope="github:read",
                resource=f"repo:acme/r{i}",
                allow=True,
                reason="ok",
                occurred_at=at,
                details={"i": i},
            )
            for i in range(n)
        ],
        batch_size=5000,
    )


def test_jsonl_export_has_every_row_and_ends_with_the_chain_status(owner, auditor):
    agent = make_agent(owner)
    _activity(agent, 3)

    lines = [json.loads(line) for line in export.stream(auditor, "activity", "jsonl")]

    assert [line["type"] for line in lines] == ["activity"] * 3 + ["summary"]
    assert lines[0]["resource"] == "repo:acme/r0" and lines[0]["agent_id"] == str(agent.id)
    assert lines[-1]["rows"] == 3 and lines[-1]["audit_chain"]["ok"] is True


def test_csv_export_quotes_json_and_neutralises_formulas(owner, auditor):
    agent = make_agent(owner)
    ActivityEvent.objects.create(
        kind="tool_call", agent=agent, scope="github:read", resource="=HYPERLINK(1)", details={"a": 1}
    )

    rows = list(csv.DictReader(io.StringIO("".join(export.stream(auditor, "activity", "csv")))))

    assert len(rows) == 1
    assert rows[0]["resource"] == "'=HYPERLINK(1)" and json.loads(rows[0]["details"]) == {"a": 1}


def test_time_range_and_owner_scope_apply(owner, other_owner, auditor):
    mine, theirs = make_agent(owner), make_agent(other_owner, slug="theirs")
    _activity(mine, 2)
    _activity(theirs, 3)
    _activity(mine, 4, at=timezone.now() - timedelta(days=10))
    since = timezone.now() - timedelta(days=1)

    assert export.rows_for(owner, "activity", since=since, until=None).count() == 2
    assert export.rows_for(auditor, "activity", since=since, until=None).count() == 5
    assert export.rows_for(owner, "audit", since=None, until=None).filter(agent_id=theirs.id).count() == 0
    assert export.rows_for(auditor, "audit", since=None, until=None).filter(agent_id=theirs.id).count() > 0


def test_streaming_fifty_thousand_rows_keeps_memory_bounded(owner, auditor):
    agent = make_agent(owner)
    _activity(agent, 50_000)

    tracemalloc.start()
    try:
        count = 0
        size = 0
        for line in export.stream(auditor, "activity", "jsonl"):
            count += 1
            size += len(line)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 50_001
    # The output is ~10 MB; holding it (or the rows) would peak far above this.
    assert size > 8_000_000
    assert peak < 6_000_000, f"peak {peak} bytes"


def test_background_export_writes_the_file_with_progress_and_a_manifest(
    owner, auditor, data_dir, django_capture_on_commit_callbacks
):
    agent = make_agent(owner)
    make_instance(agent)
    _activity(agent, 12_000)

    with django_capture_on_commit_callbacks(execute=True):
        job = export.start_export(user=auditor, kind="activity", fmt="csv")

    job.refresh_from_db()
    assert job.status == ExportJob.Status.DONE and job.total == job.done == 12_000 and job.percent == 100
    path = export.file_of(job)
    assert path is not None
    with open(path) as rows:
        assert sum(1 for _ in rows) == 12_001
    manifest = json.loads((data_dir / "exports" / f"{job.file_name}.manifest.json").read_text())
    assert manifest["rows"] == 12_000 and manifest["audit_chain"]["ok"] and manifest["sha256"] == job.sha256
    assert export.run_export(job.id) is None  # a redelivered task does not run it twice


def test_bad_kind_format_or_range_is_a_validation_error(auditor):
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        export.start_export(user=auditor, kind="users", fmt="csv")
    with pytest.raises(ValidationFailed):
        export.start_export(user=auditor, kind="audit", fmt="xml")
    now = timezone.now()
    with pytest.raises(ValidationFailed):
        export.start_export(user=auditor, kind="audit", fmt="csv", since=now, until=now - timedelta(days=1))
