"""The sweeps' bulk audit path links rows that verify_chain accepts, whatever the content covers."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from audit import services as audit
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _bulk(reason: str = "expired", n: int = 3) -> int:
    agent = uuid.uuid4()
    targets = [(agent, f"jti-{i}", f"credential {i}") for i in range(n)] + [(None, "global-1", "")]
    with transaction.atomic():
        return audit.record_many(
            "credential.expired",
            actor=audit.Actor.scheduler("expire-credentials"),
            target_type="credential",
            targets=targets,
            before={"status": "active"},
            after={"status": "expired"},
            reason=reason,
        )


def test_bulk_rows_verify_like_single_rows():
    with transaction.atomic():
        audit.record("system.note", actor=audit.Actor.scheduler("t"), target=("system", "1", "one"), reason="x")
    assert _bulk() == 4
    result = audit.verify_chain()
    assert result.ok and result.checked == 5


def test_a_new_field_in_the_canonical_content_is_covered_by_the_bulk_path(monkeypatch):
    original = audit._content

    def with_a_new_field(**fields):
        return {**original(**fields), "zz_new": "covered", "aa_new": [1, 2]}

    monkeypatch.setattr(audit, "_content", with_a_new_field)
    _bulk()
    assert audit.verify_chain().ok
    # and the hash really depends on the new field: without it, the rows no longer verify
    monkeypatch.setattr(audit, "_content", original)
    assert not audit.verify_chain().ok


def test_a_reason_that_spells_a_row_marker_still_links_correctly():
    _bulk(reason="\x1fseq\x1f")
    assert audit.verify_chain().ok
    assert AuditEvent.objects.filter(reason="\x1fseq\x1f").count() == 4
