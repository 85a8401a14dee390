"""The posture page, the rows behind each chart, the standards mapping, evidence exports and the
standing-exception register. Views parse, call the posture selectors and services, and render."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

from django.contrib import messages
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import AGENT_OWNER, can_read_all, has_role, is_admin
from audit.services import verify_chain
from console import charts
from console.views._common import console_view
from core import csv_export
from core.errors import DomainError
from identities.models import Agent
from posture import export, standards
from posture import selectors as posture
from posture import standing_exceptions as exception_services
from posture.models import StandingException
from tasks.models import TaskEnvelope

WINDOWS = (7, 30, 90)
ROWS_LIMIT = 200


def _days(request) -> int:
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        return 30
    return days if days in WINDOWS else 30


def _date_or_none(value):
    try:
        return parse_date(value or "")
    except ValueError:  # well-formed but impossible, such as 2020-13-45
        return None


def _window(request) -> posture.Window:
    return posture.Window.last(_days(request))


def _rows_url(kind: str, days: int, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"days": days, **params}.items())
    return f"{reverse('posture-rows', args=[kind])}?{query}"


# --- the page ------------------------------------------------------------------------------------


@require_GET
@console_view()
def posture_page(request):
    user, window, days = request.user, _window(request), _days(request)
    usage = posture.granted_vs_used(user, window)
    stale = posture.stale_counts(user)
    lifetimes = posture.credential_lifetimes(user, window)
    waits = posture.approval_waits(user, window)
    timeline = posture.denials_and_drift(user, window)
    renewals = posture.back_to_back_renewals(user, window)
    always_max = posture.always_max_duration(user, window)
    minted = posture.over_minted(user, window)
    short, total_creds = posture.short_lived_share(user, window)

    top_agents = usage.agents[:12]
    privilege_chart = charts.stacked_bar(
        [
            charts.Stack(
                a.agent_slug,
                (
                    charts.Segment(
                        "used",
                        len(a.used_scopes),
                        _rows_url("unused", days, agent=a.agent_slug, show="used"),
                        charts.PALETTE["used"],
                    ),
                    charts.Segment(
                        "granted, never used",
                        len(a.unused_scopes),
                        _rows_url("unused", days, agent=a.agent_slug),
                        charts.PALETTE["unused"],
                        "unused",
                    ),
                ),
                href=_rows_url("unused", days, agent=a.agent_slug),
            )
            for a in top_agents
        ],
        title="Privilege used vs granted, per agent",
        desc=f"Distinct scopes granted to each agent's envelopes in the last {days} days, split into used and "
        f"never used.",
        empty="No envelope held authority in this window.",
    )
    lifetime_chart = charts.bar_chart(
        [
            charts.Bar(
                label,
                n,
                _rows_url("credentials", days, bucket=i),
                charts.PALETTE["neutral"] if i < 3 else charts.PALETTE["warn"],
            )
            for i, (label, n) in enumerate(lifetimes)
        ],
        title="Credential lifetimes",
        desc=f"Credentials issued in the last {days} days by how long they were valid.",
        unit="credentials",
    )
    wait_chart = charts.bar_chart(
        [
            *(
                charts.Bar(
                    label,
                    n,
                    _rows_url("approvals", days, bucket=i),
                    charts.PALETTE["neutral"] if i < 3 else charts.PALETTE["warn"],
                )
                for i, (label, n) in enumerate(waits["buckets"])
            ),
            charts.Bar(
                "policy rule", waits["auto"], "", charts.PALETTE["muted"], note="approved by a named low-risk rule"
            ),
        ],
        title="Approval waiting times",
        desc=f"Time from request to approval for envelopes approved in the last {days} days.",
        unit="envelopes",
    )
    timeline_chart = charts.time_series(
        [d["day"].strftime("%d %b") for d in timeline],
        [
            charts.Series("denied", [d["denied"] for d in timeline], charts.PALETTE["unused"]),
            charts.Series("drift", [d["drift"] for d in timeline], charts.PALETTE["warn"]),
        ],
        title="Denials and drift per day",
        desc=f"Denied decisions and drift events per day, last {days} days.",
        hrefs=[_rows_url("denied", days, day=d["day"].isoformat()) for d in timeline],
    )
    stale_chart = charts.bar_chart(
        [
            charts.Bar(
                label,
                stale[key],
                _rows_url(key, days),
                charts.PALETTE["unused"] if key == "orphaned_agents" else charts.PALETTE["warn"],
            )
            for key, label in posture.STALE_LABELS.items()
        ],
        title="Stale and orphaned",
        desc="Current counts of stale sessions, orphaned agents, never-seen instances, "
        "clones outliving their parent and open standing exceptions.",
    )
    context = {
        "days": days,
        "windows": WINDOWS,
        "usage": usage,
        "stale": stale,
        "renewals": renewals[:10],
        "always_max": always_max,
        "minted": minted[:10],
        "short": short,
        "total_creds": total_creds,
        "short_pct": (100 * short / total_creds) if total_creds else None,
        "unused_pct": (100 * usage.unused_share) if usage.unused_share is not None else None,
        "suggestions": _latest_suggestions(usage.envelopes)[:15],
        "charts": {
            "privilege": privilege_chart,
            "lifetimes": lifetime_chart,
            "waits": wait_chart,
            "timeline": timeline_chart,
            "stale": stale_chart,
        },
        "exceptions": list(
            exception_services.standing_exceptions_for(user)
            .filter(status__in=StandingException.OPEN_STATES)
            .order_by("expires_at")[:10]
        ),
        "jobs": list(export.jobs_for(user)[:5]),
        "thresholds": {
            "renewal_gap": int(posture.RENEWAL_GAP.total_seconds() // 60),
            "renewal_chain": posture.RENEWAL_CHAIN_MIN,
            "mint_ratio": posture.MINT_RATIO,
            "mint_min": posture.MINT_MIN_CREDENTIALS,
        },
        "can_narrow": is_admin(user) or has_role(user, AGENT_OWNER),
        "can_read_all": can_read_all(user),
    }
    return render(request, "posture/page.html", context)


def _latest_suggestions(envelopes) -> list:
    """One row per agent, instance and suggestion: the latest envelope (the one to narrow next time),
    with how many envelopes in the window showed the same excess."""
    latest: dict = {}
    for usage in envelopes:  # ordered by agent, then approval time
        if usage.suggestion is None:
            continue
        key = (usage.agent_id, usage.instance_id, tuple(usage.suggestion["scopes"]), tuple(usage.unused_scopes))
        seen = latest.get(key)
        usage.repeats = (seen.repeats + 1) if seen else 1
        latest[key] = usage
    return sorted(latest.values(), key=lambda u: (-u.repeats * len(u.unused_scopes), u.agent_slug))


# --- the rows behind each chart ------------------------------------------------------------------

ROW_TITLES = {
    "unused": "Granted vs used, per envelope",
    "credentials": "Credentials by lifetime",
    "approvals": "Envelopes by approval waiting time",
    "denied": "Denied decisions",
    "drift": "Drift events",
    "renewals": "Back-to-back renewals",
    "max_duration": "Agents always at maximum duration",
    "over_minted": "Credentials minted far beyond need",
    **posture.STALE_LABELS,
}


def _int(value, default=0, *, low=0, high=10):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if low <= number <= high else default


@require_GET
@console_view()
def posture_rows(request, kind: str):
    if kind not in ROW_TITLES:
        raise Http404("no such posture view")
    user, window, days = request.user, _window(request), _days(request)
    context = {
        "kind": kind,
        "title": ROW_TITLES[kind],
        "days": days,
        "windows": WINDOWS,
        "limit": ROWS_LIMIT,
        "can_narrow": is_admin(user) or has_role(user, AGENT_OWNER),
    }
    if kind == "unused":
        agent = None
        if request.GET.get("agent"):
            agent = posture.agents_in_scope(user).filter(slug=request.GET["agent"]).first()
            if agent is None:
                raise Http404("no such agent")
        rows = posture.granted_vs_used(user, window, agent=agent).envelopes
        context.update(rows=rows[:ROWS_LIMIT], agent=agent, total=len(rows))
    elif kind == "credentials":
        bucket = _int(request.GET.get("bucket"), high=len(posture.LIFETIME_BUCKETS) - 1)
        qs = posture.credentials_in_bucket(user, window, bucket).order_by("-issued_at")
        context.update(rows=list(qs[:ROWS_LIMIT]), bucket=posture.LIFETIME_BUCKETS[bucket][0])
    elif kind == "approvals":
        bucket = _int(request.GET.get("bucket"), high=len(posture.WAIT_BUCKETS) - 1)
        qs = posture.envelopes_in_wait_bucket(user, window, bucket).order_by("-wait")
        context.update(rows=list(qs[:ROWS_LIMIT]), bucket=posture.WAIT_BUCKETS[bucket][0])
    elif kind in ("denied", "drift"):
        qs = (
            posture.activity_in_scope(user)
            .select_related("agent")
            .filter(occurred_at__gte=window.since, occurred_at__lt=window.until)
        )
        qs = qs.filter(allow=False) if kind == "denied" else qs.filter(drift=True)
        day = _date_or_none(request.GET.get("day"))
        if day is not None:
            start = timezone.make_aware(datetime.combine(day, time.min))
            qs = qs.filter(occurred_at__gte=start, occurred_at__lt=start + timedelta(days=1))
        context.update(rows=list(qs.order_by("-id")[:ROWS_LIMIT]), day=day)
    elif kind == "renewals":
        context.update(rows=posture.back_to_back_renewals(user, window)[:ROWS_LIMIT])
    elif kind == "max_duration":
        context.update(rows=posture.always_max_duration(user, window)[:ROWS_LIMIT])
    elif kind == "over_minted":
        context.update(rows=posture.over_minted(user, window)[:ROWS_LIMIT])
    else:
        qs = posture.stale_and_orphaned(user)[kind]
        context.update(rows=list(qs[:ROWS_LIMIT]))
    return render(request, "posture/rows.html", context)


@require_POST
@console_view()
def narrow_envelope(request, pk):
    envelope = get_object_or_404(
        TaskEnvelope.objects.select_related("agent", "instance__agent").visible_to(request.user),
        pk=pk,
    )
    try:
        new = posture.request_narrower_envelope(
            envelope=envelope, actor=request.user, window=_window(request), request=request
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(f"{reverse('posture')}?days={_days(request)}#suggestions")
    messages.success(request, f"Requested a narrower envelope ({', '.join(new.scopes)}); it is {new.state}.")
    return redirect("envelope-page", new.id)


# --- standards mapping ---------------------------------------------------------------------------


def _controls(request) -> list[standards.Control]:
    """The standards mapping for this caller, each drill-down turned into a link."""
    rows = standards.controls(request.user, _window(request))
    for row in rows:
        if row.drill:
            query = "&".join(f"{k}={v}" for k, v in row.drill.query.items())
            row.link = reverse(row.drill.route, args=row.drill.args) + (f"?{query}" if query else "")
    return rows


@require_GET
@console_view()
def standards_page(request):
    days = _days(request)
    rows = _controls(request)
    return render(request, "posture/standards.html", {"rows": rows, "days": days, "windows": WINDOWS})


@require_GET
@console_view()
def standards_export(request):
    days = _days(request)
    rows = [row.as_dict() for row in _controls(request)]
    fmt = request.GET.get("format", "json")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if fmt == "csv":
        header = [
            "control",
            "how",
            "owasp_agentic_risks",
            "maestro_layers",
            "nist_ai_rmf",
            "evidence",
            "figure",
            "healthy",
        ]
        body = csv_export.render(
            [
                header,
                *(
                    [
                        row["control"],
                        row["how"],
                        "; ".join(row["owasp"]),
                        "; ".join(row["maestro"]),
                        "; ".join(row["nist"]),
                        row["evidence"],
                        row["figure"],
                        "" if row["healthy"] is None else str(row["healthy"]).lower(),
                    ]
                    for row in rows
                ),
            ]
        )
        response = HttpResponse(body, content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="mandate-standards-{stamp}.csv"'
        return response
    if fmt != "json":
        return HttpResponseBadRequest("format must be json or csv")
    chain = verify_chain()
    body = {
        "generated_at": timezone.now().isoformat(),
        "window_days": days,
        "audit_chain": {"ok": chain.ok, "checked": chain.checked, "first_bad": chain.first_bad},
        "controls": rows,
    }
    response = HttpResponse(json.dumps(body, indent=2, default=str), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="mandate-standards-{stamp}.json"'
    return response


@require_GET
@console_view()
def verify_page(request):
    """Walk the audit chain now (htmx partial or page)."""
    chain = verify_chain()
    template = "posture/_verify.html" if request.htmx else "posture/verify.html"
    return render(request, template, {"chain": chain})


# --- evidence export -----------------------------------------------------------------------------


def _moment(value: str | None, field: str, *, end: bool = False):
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(f"{field}: a date (YYYY-MM-DD) or an ISO 8601 time")
        moment = datetime.combine(day, time.min) + (timedelta(days=1) if end else timedelta())
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return moment


def _export_params(data):
    kind, fmt = export.clean_kind_and_format(data.get("kind", "audit"), data.get("format", "jsonl"))
    since = _moment(data.get("since"), "since")
    until = _moment(data.get("until"), "until", end=True)
    if since and until and since >= until:
        raise ValueError("since must be before until")
    return kind, fmt, since, until


@require_GET
@console_view()
def evidence_stream(request):
    try:
        kind, fmt, since, until = _export_params(request.GET)
    except (ValueError, DomainError) as exc:
        return HttpResponseBadRequest(getattr(exc, "message", str(exc)))
    response = StreamingHttpResponse(
        export.stream(request.user, kind, fmt, since=since, until=until), content_type=export.CONTENT_TYPES[fmt]
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="mandate-{kind}-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@console_view()
def export_start(request):
    try:
        kind, fmt, since, until = _export_params(request.POST)
        job = export.start_export(user=request.user, kind=kind, fmt=fmt, since=since, until=until)
    except (ValueError, DomainError) as exc:
        message = getattr(exc, "message", str(exc))
        if request.htmx:
            if isinstance(exc, export.TooManyExports):
                # A row in the jobs table saying why (console.js swaps refusals marked so).
                response = render(request, "posture/_export_refused.html", {"message": message}, status=429)
                response["X-Mandate-Refusal"] = "1"
                return response
            return HttpResponseBadRequest(message)
        messages.error(request, message)
        return redirect(f"{reverse('posture')}#evidence")
    if request.htmx:
        return render(request, "posture/_export_job.html", {"job": job})
    return redirect(f"{reverse('posture')}#evidence")


@require_GET
@console_view()
def export_status(request, pk):
    job = get_object_or_404(export.jobs_for(request.user), pk=pk)
    return render(request, "posture/_export_job.html", {"job": job})


@require_GET
@console_view()
def export_download(request, pk):
    job = get_object_or_404(export.jobs_for(request.user), pk=pk)
    path = export.file_of(job)
    if path is None:
        raise Http404("this export is not ready")
    return FileResponse(
        open(path, "rb"),
        as_attachment=True,
        filename=job.file_name,
        content_type=export.CONTENT_TYPES[job.format],
    )


# --- standing exceptions -------------------------------------------------------------------------


def _exception_fields(post) -> dict:
    def number(name, default):
        value = (post.get(name) or "").strip()
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            return value  # the service names the field

    return {
        "vendor": post.get("vendor", ""),
        "justification": post.get("justification", ""),
        "compensating_controls": post.get("compensating_controls", ""),
        "scopes": [s for s in post.get("scopes", "").replace(",", " ").split() if s],
        "duration_days": number("duration_days", 90),
        "recertify_every_days": number("recertify_every_days", 30),
        "issue_secret": post.get("issue_secret") == "on",
    }


@console_view()
def exceptions_page(request):
    user = request.user
    errors, secret, form = {}, None, {}
    if request.method == "POST":
        form = request.POST
        fields = _exception_fields(request.POST)
        agent = None
        if request.POST.get("agent"):
            agent = posture.agents_in_scope(user).filter(slug=request.POST["agent"]).first()
            if agent is None:
                errors["agent"] = "no such agent of yours"
        if not errors:
            try:
                requested = exception_services.request_standing_exception(
                    actor=user, agent=agent, request=request, **fields
                )
            except DomainError as exc:
                errors[exc.field or "form"] = exc.message
            else:
                secret = requested.secret
                messages.success(
                    request,
                    f"Standing exception for {requested.standing_exception.vendor} requested; "
                    "an identity admin other than you must approve it.",
                )
                form = {}
    rows = exception_services.standing_exceptions_for(user).order_by("status", "expires_at", "-created_at")
    status = request.GET.get("status")
    if status in StandingException.Status.values:
        rows = rows.filter(status=status)
    return render(
        request,
        "posture/exceptions.html",
        {
            "rows": list(rows[:ROWS_LIMIT]),
            "errors": errors,
            "secret": secret,
            "form": form,
            "agents": list(
                posture.agents_in_scope(user).exclude(status=Agent.Status.RETIRED).values_list("slug", flat=True)
            ),
            "statuses": StandingException.Status.choices,
            "status": status,
            "is_admin": is_admin(user),
            "can_request": is_admin(user) or has_role(user, AGENT_OWNER),
            "open_states": list(StandingException.OPEN_STATES),
        },
        status=400 if errors else 200,
    )


@require_POST
@console_view()
def exception_action(request, pk, verb: str):
    exc = get_object_or_404(exception_services.standing_exceptions_for(request.user), pk=pk)
    comment = request.POST.get("comment", "")
    secret = None
    try:
        if verb == "approve":
            exception_services.approve_standing_exception(
                standing_exception=exc, actor=request.user, comment=comment, request=request
            )
        elif verb == "recertify":
            exception_services.recertify_standing_exception(
                standing_exception=exc, actor=request.user, comment=comment, request=request
            )
        elif verb == "renew":
            days = request.POST.get("duration_days") or None
            renewal = exception_services.renew_standing_exception(
                standing_exception=exc,
                actor=request.user,
                request=request,
                duration_days=int(days) if days and days.isdigit() else (days or None),
            )
            secret = renewal.secret
        elif verb == "retire":
            exception_services.retire_standing_exception(
                standing_exception=exc, actor=request.user, reason=comment, request=request
            )
        else:
            raise Http404("no such action")
    except DomainError as exc_error:
        messages.error(request, exc_error.message)
    else:
        messages.success(request, f"Exception for {exc.vendor}: {verb} done.")
        if secret:
            # Shown once, on the next page only; never stored in clear.
            messages.warning(request, f"New vendor secret (shown once, copy it now): {secret}")
    return redirect(reverse("posture-exceptions"))
