"""Mandate's controls mapped to OWASP's Top 10 for Agentic Applications (risks named, not numbered),
CSA MAESTRO layers and NIST AI RMF functions — each row with evidence computed live from this
installation, scoped to the caller, over a window (default 30 days).

Three parts: the catalogue (what each control is and where the frameworks place it — text only),
``measure`` (a fixed number of aggregate queries, whatever the data size) and one small function per
control turning the figures into evidence. Where the evidence can be drilled into, a row names the
posture page to open (``drill``); the console turns that into a URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Count, F, Q, Sum

from audit.models import AuditChain
from identities.models import Credential, Instance
from posture import selectors as posture
from posture.models import MAX_STANDING_EXCEPTION_DAYS, StandingException
from tasks.models import ActivityEvent, Approval, TaskEnvelope


@dataclass(frozen=True)
class Drill:
    """A posture page that lists the rows behind a figure: a URL name, its arguments and a query."""

    route: str
    args: tuple[str, ...] = ()
    query: dict[str, Any] = field(default_factory=dict)


@dataclass
class Control:
    key: str
    control: str
    how: str
    owasp: tuple[str, ...]
    maestro: tuple[str, ...]
    nist: tuple[str, ...]
    evidence: str = ""
    figure: str = ""
    healthy: bool | None = None
    link: str = ""  # filled in by the console from ``drill``
    drill: Drill | None = None

    def as_dict(self) -> dict:
        row = asdict(self)
        row.pop("drill")
        row.update(owasp=list(self.owasp), maestro=list(self.maestro), nist=list(self.nist))
        return row


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def measure(user, window: posture.Window) -> dict[str, Any]:
    """Every figure the evidence needs, scoped to ``user``, over ``window``."""
    short, total_creds = posture.short_lived_share(user, window)
    creds = (
        Credential.objects.filter(issued_at__gte=window.since, issued_at__lt=window.until)
        .visible_to(user)
        .aggregate(
            delegated=Count("jti", filter=Q(parent__isnull=False)),
            revoked=Count("jti", filter=Q(status=Credential.Status.REVOKED)),
        )
    )
    instances = (
        Instance.objects.filter(status__in=Instance.LIVE_STATES)
        .visible_to(user)
        .aggregate(
            live=Count("id"),
            keyed=Count("key_thumbprint", distinct=True, filter=~Q(key_thumbprint="")),
            attested=Count("id", filter=~Q(attested_issuer="")),
        )
    )
    envs = (
        TaskEnvelope.objects.filter(created_at__gte=window.since, created_at__lt=window.until)
        .visible_to(user)
        .aggregate(
            requested=Count("id"),
            decided=Count("id", filter=Q(approved_at__isnull=False) | Q(state=TaskEnvelope.State.DENIED)),
            auto=Count("id", filter=~Q(auto_approved_by="")),
            denied=Count("id", filter=Q(state=TaskEnvelope.State.DENIED)),
            drift_revoked=Count("id", filter=Q(state=TaskEnvelope.State.REVOKED, drift_count__gt=0)),
            high=Count("id", filter=Q(risk=TaskEnvelope.Risk.HIGH, approved_at__isnull=False)),
            high_two=Count(
                "id", filter=Q(risk=TaskEnvelope.Risk.HIGH, approved_at__isnull=False, required_approvals__gte=2)
            ),
        )
    )
    self_approved = (
        Approval.objects.filter(at__gte=window.since, at__lt=window.until)
        .visible_to(user)
        .filter(by_id=F("envelope__requested_by_id"))
        .count()
    )
    activity = (
        posture.activity_in_scope(user)
        .filter(occurred_at__gte=window.since, occurred_at__lt=window.until)
        .aggregate(
            decisions=Count("id", filter=Q(kind=ActivityEvent.Kind.DECISION)),
            denied=Count("id", filter=Q(kind=ActivityEvent.Kind.DECISION, allow=False)),
            reported=Count("id", filter=~Q(kind=ActivityEvent.Kind.DECISION)),
            escalations=Count("id", filter=Q(kind=ActivityEvent.Kind.PRIVILEGE_ESCALATION)),
            drift=Count("id", filter=Q(drift=True)),
        )
    )
    usage = posture.granted_vs_used(user, window)
    stale = posture.stale_counts(user)
    exc = (
        StandingException.objects.filter(status=StandingException.Status.APPROVED)
        .visible_to(user)
        .aggregate(
            open=Count("id"),
            overdue=Count("id", filter=Q(recertify_by__lt=window.until.date())),
            too_long=Count("id", filter=Q(duration_days__gt=MAX_STANDING_EXCEPTION_DAYS)),
        )
    )
    chains = AuditChain.objects.aggregate(chains=Count("key"), rows=Sum("length"))

    return {
        "short": short,
        "total_creds": total_creds,
        "creds": creds,
        "instances": instances,
        "envs": envs,
        "self_approved": self_approved,
        "activity": activity,
        "usage": usage,
        "stale": stale,
        "exc": exc,
        "chains": chains,
    }


# --- the catalogue: (key, control, how, OWASP agentic risks, MAESTRO layers, NIST AI RMF functions) ---

CATALOGUE: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "workload-identity",
        "Per-instance workload identity",
        "Every running copy of an agent has its own SPIFFE ID and its own key; clones inherit no access.",
        ("Identity and privilege abuse", "Rogue agents"),
        ("Agent ecosystem", "Security and compliance"),
        ("Govern", "Map"),
    ),
    (
        "short-lived-credentials",
        "Short-lived, just-in-time credentials",
        "Credentials are minted per instance inside an approved envelope, 5 minutes by default, 15 at most.",
        ("Identity and privilege abuse",),
        ("Deployment and infrastructure", "Security and compliance"),
        ("Manage",),
    ),
    (
        "task-envelopes",
        "Authority tied to intent and duration (task envelopes)",
        "Each grant names its intent, scopes, resources, duration and action budget, and ends by itself.",
        ("Agent goal hijack", "Tool misuse and exploitation"),
        ("Agent frameworks", "Security and compliance"),
        ("Govern", "Map"),
    ),
    (
        "human-approval",
        "Human approval with separation of duties",
        "An admin other than the requester approves; high-risk envelopes need two different admins.",
        ("Human-agent trust exploitation", "Identity and privilege abuse"),
        ("Security and compliance",),
        ("Govern",),
    ),
    (
        "least-privilege",
        "Least privilege measured: granted vs used",
        "Scopes granted are compared with scopes exercised; the used subset is offered as the next request.",
        ("Identity and privilege abuse", "Tool misuse and exploitation"),
        ("Evaluation and observability",),
        ("Measure", "Manage"),
    ),
    (
        "runtime-decisions",
        "Decision at every call, everything on record",
        "Gateways ask before each tool call; decisions, tool calls, secret accesses and escalations are recorded.",
        ("Tool misuse and exploitation", "Cascading failures"),
        ("Evaluation and observability",),
        ("Measure",),
    ),
    (
        "drift",
        "Drift detection and automatic revocation",
        "A call outside the envelope is denied, flagged and, per policy, revokes the envelope.",
        ("Rogue agents", "Agent goal hijack"),
        ("Evaluation and observability", "Security and compliance"),
        ("Manage",),
    ),
    (
        "delegation",
        "Bounded delegation",
        "Token exchange only where the envelope allows it, never wider or longer than the parent, with `act`.",
        ("Insecure inter-agent communication", "Cascading failures"),
        ("Agent ecosystem",),
        ("Manage",),
    ),
    (
        "kill-switch",
        "Lifecycle cascades (pause, retire, revoke)",
        "Pausing or retiring an agent or instance, or ending an envelope, revokes its credentials at once.",
        ("Rogue agents", "Cascading failures"),
        ("Deployment and infrastructure",),
        ("Manage",),
    ),
    (
        "stale-orphaned",
        "Stale sessions and orphaned identities",
        "Sweeps flag idle sessions; agents whose owner left are flagged and paused by policy.",
        ("Identity and privilege abuse", "Rogue agents"),
        ("Security and compliance",),
        ("Govern", "Manage"),
    ),
    (
        "standing-exceptions",
        "Standing exceptions register",
        "Long-lived vendor tokens are approved, justified, re-certified and expire within "
        f"{MAX_STANDING_EXCEPTION_DAYS} days.",
        ("Identity and privilege abuse", "Agentic supply chain"),
        ("Security and compliance", "Agent ecosystem"),
        ("Govern",),
    ),
    (
        "audit-trail",
        "Tamper-evident audit trail",
        "Every transition is written in the same transaction to an append-only, hash-chained trail.",
        ("Rogue agents", "Human-agent trust exploitation"),
        ("Security and compliance",),
        ("Govern", "Measure"),
    ),
)


# --- evidence: one function per control, (evidence, figure, healthy, drill) from the figures ---------

Evidence = tuple[str, str, bool | None, Drill | None]


def _rows(kind: str, days: int, **query: Any) -> Drill:
    return Drill("posture-rows", (kind,), {"days": days, **query})


def _workload_identity(m: dict, days: int) -> Evidence:
    inst = m["instances"]
    attested = f" and {inst['attested']} attested" if inst["attested"] else ""
    return (
        f"{inst['live']} live instances hold {inst['keyed']} distinct keys{attested}; "
        f"no key is shared (enforced by a unique constraint).",
        str(inst["live"]),
        True,
        None,
    )


def _short_lived(m: dict, days: int) -> Evidence:
    short, total = m["short"], m["total_creds"]
    return (
        f"{_pct(short, total)} of {total} credentials issued in the last {days} days were valid for ≤ 15 min.",
        _pct(short, total),
        (short == total) if total else None,
        _rows("credentials", days, bucket=4),
    )


def _envelopes(m: dict, days: int) -> Evidence:
    envs = m["envs"]
    return (
        f"{envs['requested']} envelopes requested in the last {days} days; {envs['decided']} decided, "
        f"{envs['auto']} approved by a named low-risk policy rule, {envs['denied']} denied.",
        str(envs["requested"]),
        None,
        None,
    )


def _approval(m: dict, days: int) -> Evidence:
    envs, own = m["envs"], m["self_approved"]
    return (
        f"{own} approvals by the envelope's own requester; {envs['high_two']} of "
        f"{envs['high']} approved high-risk envelopes required two admins.",
        str(own),
        own == 0 and envs["high_two"] == envs["high"],
        _rows("approvals", days, bucket=4),
    )


def _least_privilege(m: dict, days: int) -> Evidence:
    usage = m["usage"]
    used = usage.granted_pairs - usage.unused_pairs
    used_share = 1 - usage.unused_share if usage.unused_share is not None else None
    narrower = len([e for e in usage.envelopes if e.suggestion])
    return (
        f"{used} of {usage.granted_pairs} granted scopes were used in the last {days} days "
        f"({_pct(used, usage.granted_pairs)}); {narrower} envelopes have a narrower suggestion.",
        f"{100 * used_share:.1f} %" if used_share is not None else "n/a",
        (usage.unused_share or 0) <= 0.25 if usage.granted_pairs else None,
        _rows("unused", days),
    )


def _decisions(m: dict, days: int) -> Evidence:
    act = m["activity"]
    return (
        f"{act['decisions']} decisions in the last {days} days, {act['denied']} denied; "
        f"{act['reported']} reported events, {act['escalations']} privilege-escalation attempts.",
        str(act["decisions"]),
        None,
        _rows("denied", days),
    )


def _drift(m: dict, days: int) -> Evidence:
    return (
        f"{m['activity']['drift']} drift events in the last {days} days; {m['envs']['drift_revoked']} envelopes "
        f"revoked after drift.",
        str(m["activity"]["drift"]),
        None,
        _rows("drift", days),
    )


def _delegation(m: dict, days: int) -> Evidence:
    delegated = m["creds"]["delegated"]
    return (
        f"{delegated} delegated credentials in the last {days} days, each bound to its parent.",
        str(delegated),
        None,
        None,
    )


def _kill_switch(m: dict, days: int) -> Evidence:
    revoked = m["creds"]["revoked"]
    return (
        f"{revoked} credentials issued in the last {days} days were revoked before expiry.",
        str(revoked),
        None,
        None,
    )


def _n(number: int, noun: str) -> str:
    """'1 stale instance', '2 stale instances'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _stale(m: dict, days: int) -> Evidence:
    stale = m["stale"]
    flagged = [v for k, v in stale.items() if k != "open_exceptions"]
    return (
        f"{_n(stale['stale_instances'], 'stale instance')}, {_n(stale['stale_envelopes'], 'stale envelope')}, "
        f"{_n(stale['orphaned_agents'], 'orphaned agent')}, {_n(stale['never_seen'], 'instance')} never seen, "
        f"{_n(stale['outlived_parent'], 'clone')} outliving their parent.",
        str(sum(flagged)),
        not any(flagged),
        _rows("orphaned_agents", days),
    )


def _standing_exceptions(m: dict, days: int) -> Evidence:
    exc = m["exc"]
    return (
        f"{exc['open']} approved exceptions, {exc['too_long']} longer than {MAX_STANDING_EXCEPTION_DAYS} days; "
        f"{exc['overdue']} overdue for re-certification.",
        str(exc["open"]),
        exc["overdue"] == 0 and exc["too_long"] == 0,
        Drill("posture-exceptions"),
    )


def _audit_trail(m: dict, days: int) -> Evidence:
    chains = m["chains"]
    return (
        f"{chains['rows'] or 0} audit rows in {chains['chains']} hash chains; verify the chain "
        f"or export it with its verification.",
        str(chains["rows"] or 0),
        None,
        Drill("posture-verify"),
    )


EVIDENCE: dict[str, Callable[[dict, int], Evidence]] = {
    "workload-identity": _workload_identity,
    "short-lived-credentials": _short_lived,
    "task-envelopes": _envelopes,
    "human-approval": _approval,
    "least-privilege": _least_privilege,
    "runtime-decisions": _decisions,
    "drift": _drift,
    "delegation": _delegation,
    "kill-switch": _kill_switch,
    "stale-orphaned": _stale,
    "standing-exceptions": _standing_exceptions,
    "audit-trail": _audit_trail,
}


def controls(user, window: posture.Window) -> list[Control]:
    """The mapping with its evidence. A fixed number of aggregate queries, whatever the data size."""
    figures = measure(user, window)
    rows = []
    for key, control, how, owasp, maestro, nist in CATALOGUE:
        evidence, figure, healthy, drill = EVIDENCE[key](figures, window.days)
        rows.append(Control(key, control, how, owasp, maestro, nist, evidence, figure, healthy, drill=drill))
    return rows
