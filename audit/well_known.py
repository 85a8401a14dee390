"""``/.well-known/mandate-audit-keys.json``: the public keys that sign audit checkpoints.

Their own document, deliberately not ``/.well-known/jwks.json``: those keys verify credentials, and
an audit key there would let a checkpoint pass as a credential (or the other way round). Auditors
fetch this once and pin it (tools/verify_audit.py --keys).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from audit.keys import public_jwk
from audit.models import AuditSigningKey


@require_GET
@cache_control(public=True, max_age=300)
def audit_keys(request):
    keys = [public_jwk(key) for key in AuditSigningKey.objects.order_by("created_at")]
    return JsonResponse({"keys": keys})
