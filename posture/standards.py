"""Mandate's controls mapped to OWASP's Top 10 for Agentic Applications (risks named, not numbered),
CSA MAESTRO layers and NIST AI RMF functions — each row with evidence computed live from this
installation, scoped to the caller, over a window (default 30 days).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db.models import Count, F, Q, Sum
from django.urls import reverse

from audit.models import AuditChain
from identities.models import Credential, Instance
from posture import selectors as posture
from posture.models import MAX_EXCEPTION_DAYS, StandingException
from tasks.models import ActivityEvent, Approval, TaskEnvelope


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
    link: str = ""

    def as_dict(self) -> dict:
        row = asdict(self)
        row.update(owasp=list(self.owasp), maestro=list(self.maestro), nist=list(self.nist))
        return row


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def controls(user, window: posture.Window) -> list[Control]:
    """The mapping with its evidence. A fixed number of aggregate queries, whatever the data size."""
    days = window.days

    def rows_url(kind, **q):
        return reverse("posture-rows", args=[kind]) + "?" + "&".join(f"{k}={v}" for k, v in {"days": days, **q}.items())

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
            too_long=Count("id", filter=Q(duration_days__gt=MAX_EXCEPTION_DAYS)),
        )
    )
    chains = AuditChain.objects.aggregate(chains=Count("key"), rows=Sum("length"))

    used_share = 1 - usage.unused_share if usage.unused_share is not None else None
    return [
        Control(
            "workload-identity",
            "Per-instance workload identity",
            "Every running copy of an agent has its own SPIFFE ID and its own key; clones inherit no access.",
            ("Identity and privilege abuse", "Rogue agents"),
            ("Agent ecosystem", "Security and compliance"),
            ("Govern", "Map"),
            evidence=(
                f"{instances['live']} live instances hold {instances['keyed']} distinct keys"
                f"{' and ' + str(instances['attested']) + ' attested' if instances['attested'] else ''}; "
                f"no key is shared (enforced by a unique constraint)."
            ),
            figure=str(instances["live"]),
            healthy=True,
        ),
        Control(
            "short-lived-credentials",
            "Short-lived, just-in-time credentials",
            "Credentials are minted per instance inside an approved envelope, 5 minutes by default, 15 at most.",
            ("Identity and privilege abuse",),
            ("Deployment and infrastructure", "Security and compliance"),
            ("Manage",),
            evidence=(
                f"{_pct(short, total_creds)} of {total_creds} credentials issued in the last {days} days "
                f"were valid for ≤ 15 min."
            ),
            figure=_pct(short, total_creds),
            healthy=(short == total_creds) if total_creds else None,
            link=rows_url("credentials", bucket=4),
        ),
        Control(
            "task-envelopes",
            "Authority tied to intent and duration (task envelopes)",
            "Each grant names its intent, scopes, resources, duration and action budget, and ends by itself.",
            ("Agent goal hijack", "Tool misuse and exploitation"),
            ("Agent frameworks", "Security and compliance"),
            ("Govern", "Map"),
            evidence=(
                f"{envs['requested']} envelopes requested in the last {days} days; {envs['decided']} decided, "
                f"{envs['auto']} approved by a named low-risk policy rule, {envs['denied']} denied."
            ),
            figure=str(envs["requested"]),
        ),
        Control(
            "human-approval",
            "Human approval with separation of duties",
            "An admin other than the requester approves; high-risk envelopes need two different admins.",
            ("Human-agent trust exploitation", "Identity and privilege abuse"),
            ("Security and compliance",),
            ("Govern",),
            evidence=(
                f"{self_approved} approvals by the envelope's own requester; {envs['high_two']} of "
                f"{envs['high']} approved high-risk envelopes required two admins."
            ),
            figure=str(self_approved),
            healthy=self_approved == 0 and envs["high_two"] == envs["high"],
            link=rows_url("approvals", bucket=4),
        ),
        Control(
            "least-privilege",
            "Least privilege measured: granted vs used",
            "Scopes granted are compared with scopes exercised; the used subset is offered as the next request.",
            ("Identity and privilege abuse", "Tool misuse and exploitation"),
            ("Evaluation and observability",),
            ("Measure", "Manage"),
            evidence=(
                f"{usage.granted_pairs - usage.unused_pairs} of {usage.granted_pairs} granted scopes were "
                f"used in the last {days} days ({_pct(usage.granted_pairs - usage.unused_pairs, usage.granted_pairs)});"
                f" {len([e for e in usage.envelopes if e.suggestion])} envelopes have a narrower suggestion."
            ),
            figure=f"{100 * used_share:.1f} %" if used_share is not None else "n/a",
            healthy=(usage.unused_share or 0) <= 0.25 if usage.granted_pairs else None,
            link=rows_url("unused"),
        ),
        Control(
            "runtime-decisions",
            "Decision at every call, everything on record",
            "Gateways ask before each tool call; decisions, tool calls, secret accesses and escalations are recorded.",
            ("Tool misuse and exploitation", "Cascading failures"),
            ("Evaluation and observability",),
            ("Measure",),
            evidence=(
                f"{activity['decisions']} decisions in the last {days} days, {activity['denied']} denied; "
                f"{activity['reported']} reported events, {activity['escalations']} privilege-escalation attempts."
            ),
            figure=str(activity["decisions"]),
            link=rows_url("denied"),
        ),
        Control(
            "drift",
            "Drift detection and automatic revocation",
            "A call outside the envelope is denied, flagged and, per policy, revokes the envelope.",
            ("Rogue agents", "Agent goal hijack"),
            ("Evaluation and observability", "Security and compliance"),
            ("Manage",),
            evidence=(
                f"{activity['drift']} drift events in the last {days} days; {envs['drift_revoked']} envelopes "
                f"revoked after drift."
            ),
            figure=str(activity["drift"]),
            link=rows_url("drift"),
        ),
        Control(
            "delegation",
            "Bounded delegation",
            "Token exchange only where the envelope allows it, never wider or longer than the parent, with `act`.",
            ("Insecure inter-agent communication", "Cascading failures"),
            ("Agent ecosystem",),
            ("Manage",),
            evidence=f"{creds['delegated']} delegated credentials in the last {days} days, each bound to its parent.",
            figure=str(creds["delegated"]),
        ),
        Control(
            "kill-switch",
            "Lifecycle cascades (pause, retire, revoke)",
            "Pausing or retiring an agent or instance, or ending an envelope, revokes its credentials at once.",
            ("Rogue agents", "Cascading failures"),
            ("Deployment and infrastructure",),
            ("Manage",),
            evidence=f"{creds['revoked']} credentials issued in the last {days} days were revoked before expiry.",
            figure=str(creds["revoked"]),
        ),
        Control(
            "stale-orphaned",
            "Stale sessions and orphaned identities",
            "Sweeps flag idle sessions; agents whose owner left are flagged and paused by policy.",
            ("Identity and privilege abuse", "Rogue agents"),
            ("Security and compliance",),
            ("Govern", "Manage"),
            evidence=(
                f"{stale['stale_instances']} stale instances, {stale['stale_envelopes']} stale envelopes, "
                f"{stale['orphaned_agents']} orphaned agents, {stale['never_seen']} instances never seen, "
                f"{stale['outlived_parent']} clones outliving their parent."
            ),
            figure=str(sum(v for k, v in stale.items() if k != "open_exceptions")),
            healthy=not any(v for k, v in stale.items() if k != "open_exceptions"),
            link=rows_url("orphaned_agents"),
        ),
        Control(
            "standing-exceptions",
            "Standing exceptions register",
            "Long-lived vendor tokens are approved, justified, re-certified and expire within "
            f"{MAX_EXCEPTION_DAYS} days.",
            ("Identity and privilege abuse", "Agentic supply chain"),
            ("Security and compliance", "Agent ecosystem"),
            ("Govern",),
            evidence=(
                f"{exc['open']} approved exceptions, {exc['too_long']} longer than {MAX_EXCEPTION_DAYS} days; "
                f"{exc['overdue']} overdue for re-certification."
            ),
            figure=str(exc["open"]),
            healthy=exc["overdue"] == 0 and exc["too_long"] == 0,
            link=reverse("posture-exceptions"),
        ),
        Control(
            "audit-trail",
            "Tamper-evident audit trail",
            "Every transition is written in the same transaction to an append-only, hash-chained trail.",
            ("Rogue agents", "Human-agent trust exploitation"),
            ("Security and compliance",),
            ("Govern", "Measure"),
            evidence=(
                f"{chains['rows'] or 0} audit rows in {chains['chains']} hash chains; verify the chain "
                f"or export it with its verification."
            ),
            figure=str(chains["rows"] or 0),
            link=reverse("posture-verify"),
        ),
    ]
