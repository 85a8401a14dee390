"""The policy as code: what the rest of Mandate asks about risk, quorum, limits and guardrails.

The policy is a directory of text files under version control (``policy/`` at the repository root,
or ``MANDATE_POLICY_DIR``): TOML for the scope catalogue, risk levels, auto-approve rules and time
limits, Cedar for the request-time guardrails. ``load_policy(path)`` reads and validates it,
collecting every problem with its file and line; ``active_policy()`` is the validated policy this
process runs, loaded once and reloaded by ``reload_policy()`` (or when the setting changes in tests).

The version is a hash of the files' content; every envelope records the version that classified it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from identities.validators import is_scope
from tasks.guardrails import GUARDRAILS_FILE, SCHEMA_FILE, Guardrails, load_guardrails
from tasks.policy_files import PolicyProblem, TomlLines, format_duration, parse_duration
from tasks.resources import is_unbounded, pattern_matches

logger = logging.getLogger(__name__)

RISKS = ("low", "medium", "high")
SCOPES_FILE = "scopes.toml"
RISK_FILE = "risk.toml"
AUTO_APPROVE_FILE = "auto_approve.toml"
LIFECYCLE_FILE = "lifecycle.toml"
DEFAULT_MAX_LIVE_CREDENTIALS = 10
POLICY_FILES = (SCOPES_FILE, RISK_FILE, AUTO_APPROVE_FILE, LIFECYCLE_FILE, GUARDRAILS_FILE, SCHEMA_FILE)
REQUIRED_FILES = (SCOPES_FILE, RISK_FILE)

# Bounds that keep a policy sane whatever an organisation writes.
MAX_APPROVALS = 5
MAX_ENVELOPE_CEILING = 30 * 86400
CREDENTIAL_TTL_HARD_CEILING = 3600
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,98}[a-z0-9]$")


class PolicyError(ImproperlyConfigured):
    """The policy directory cannot be used; ``problems`` says where and why."""

    def __init__(self, directory: Path, problems: list[PolicyProblem]):
        self.directory = directory
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"the policy in {directory} is broken ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class RiskRule:
    required_approvals: int
    max_envelope_seconds: int
    max_credential_ttl: int


@dataclass(frozen=True)
class Raiser:
    name: str
    description: str
    to: str
    when: dict

    def matches(self, *, scopes, resources, duration_seconds, max_actions, may_delegate, delegation_depth) -> bool:
        checks = {
            "duration_over": lambda v: duration_seconds > v,
            "max_actions_over": lambda v: max_actions > v,
            "may_delegate": lambda v: bool(may_delegate) == v,
            "delegation_depth_over": lambda v: delegation_depth > v,
            "wildcard_resource": lambda v: any("*" in r for r in resources) == v,
            "unbounded_resource": lambda v: any(is_unbounded(r) for r in resources) == v,
            "resource_in": lambda v: any(r in v for r in resources),
            "resource_like": lambda v: any(pattern_matches(g, r) for r in resources for g in v),
            "scope_like": lambda v: any(pattern_matches(g, s) for s in scopes for g in v),
        }
        return all(checks[key](value) for key, value in self.when.items())


@dataclass(frozen=True)
class AutoApproveRule:
    name: str
    description: str
    max_risk: str
    max_duration_seconds: int
    max_actions: int
    allow_delegation: bool = False
    scopes: tuple[str, ...] = ()

    def matches(self, *, risk, scopes, duration_seconds, max_actions, may_delegate) -> bool:
        return (
            RISKS.index(risk) <= RISKS.index(self.max_risk)
            and duration_seconds <= self.max_duration_seconds
            and max_actions <= self.max_actions
            and (self.allow_delegation or not may_delegate)
            and (not self.scopes or all(any(pattern_matches(g, s) for g in self.scopes) for s in scopes))
        )


@dataclass(frozen=True)
class Classification:
    risk: str
    required_approvals: int
    auto_approve_rule: str | None
    policy_version: str
    max_envelope_seconds: int
    max_credential_ttl: int
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyFile:
    name: str
    text: str


@dataclass(frozen=True, eq=False)
class Policy:
    version: str
    scope_risk: dict[str, str]
    risk_rules: dict[str, RiskRule]
    idle_limit_seconds: int = 900
    pending_max_seconds: int = 24 * 3600
    drift_revoke_after: int = 3
    # The most credentials one instance may hold live at once under one envelope (0 = no cap).
    max_live_credentials: int = 10
    scope_descriptions: dict[str, str] = field(default_factory=dict)
    credential_ttl_ceiling: int = 900
    raisers: tuple[Raiser, ...] = ()
    auto_approve_rules: tuple[AutoApproveRule, ...] = ()
    guardrails: Guardrails | None = None
    directory: Path | None = None
    files: tuple[PolicyFile, ...] = ()

    def risk_of_scope(self, scope: str) -> str:
        return self.scope_risk.get(scope, "high")

    def max_credential_ttl_for(self, risk: str) -> int:
        """The longest credential under an envelope of this risk (never above the deployment's ceiling)."""
        rule = self.risk_rules.get(risk) or self.risk_rules["high"]
        return min(rule.max_credential_ttl, self.credential_ttl_ceiling, settings.MANDATE_CREDENTIAL_MAX_TTL)

    def classify(
        self, *, scopes, resources, duration_seconds, max_actions, may_delegate, delegation_depth
    ) -> Classification:
        """Risk from the scopes, raised by the raisers; quorum from the level or a named auto-approve rule."""
        reasons: list[str] = []
        risk = "low"
        for scope in scopes:
            scope_risk = self.risk_of_scope(scope)
            if scope not in self.scope_risk:
                reasons.append(f"{scope} is not in the scope catalogue (high)")
            elif scope_risk != "low":
                reasons.append(f"{scope} is {scope_risk} risk")
            if RISKS.index(scope_risk) > RISKS.index(risk):
                risk = scope_risk
        for raiser in self.raisers:
            if raiser.matches(
                scopes=scopes,
                resources=resources,
                duration_seconds=duration_seconds,
                max_actions=max_actions,
                may_delegate=may_delegate,
                delegation_depth=delegation_depth,
            ):
                if RISKS.index(raiser.to) > RISKS.index(risk):
                    risk = raiser.to
                reasons.append(f"{raiser.name}: {raiser.description or 'raises risk to ' + raiser.to}")
        rule = self.risk_rules[risk]
        auto = next(
            (
                r.name
                for r in self.auto_approve_rules
                if r.matches(
                    risk=risk,
                    scopes=scopes,
                    duration_seconds=duration_seconds,
                    max_actions=max_actions,
                    may_delegate=may_delegate,
                )
            ),
            None,
        )
        return Classification(
            risk=risk,
            required_approvals=0 if auto else max(rule.required_approvals, 1),
            auto_approve_rule=auto,
            policy_version=self.version,
            max_envelope_seconds=rule.max_envelope_seconds,
            max_credential_ttl=self.max_credential_ttl_for(risk),
            reasons=tuple(reasons),
        )

    def guardrails_allow(
        self,
        *,
        instance,
        agent,
        envelope,
        scope: str,
        resource: str,
        context: dict | None = None,
        subjects: dict | None = None,
    ) -> tuple[bool, str]:
        """Do the organisation's Cedar guardrails allow this call? ``(allowed, detail)``.

        Called on every decision, after the envelope itself allows the call. Uses only the
        objects passed in (no query); ``subjects`` as ``Guardrails.evaluate`` takes it. Fails
        closed: an evaluation error is a denial whose detail names the guardrail."""
        if self.guardrails is None:
            return True, ""
        try:
            return self.guardrails.evaluate(
                instance=instance,
                agent=agent,
                envelope=envelope,
                scope=scope,
                resource=resource,
                context=context or {},
                subjects=subjects,
            )
        except Exception as exc:  # never a 500 on a decision, and never an allow by accident
            logger.exception("guardrails could not evaluate %s on %s", scope, resource)
            return False, f"guardrail could not be evaluated: {type(exc).__name__}"


# --- loading -------------------------------------------------------------------------------------


class _Reader:
    """Collects problems while reading one TOML file, citing the line of each offending key."""

    def __init__(self, name: str, text: str, problems: list[PolicyProblem]):
        self.name = name
        self.problems = problems
        self.lines = TomlLines(text)
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
            problems.append(PolicyProblem(name, line, f"not valid TOML: {_strip_position(str(exc))}"))
            self.data = None

    def problem(self, path: tuple, message: str) -> None:
        self.problems.append(PolicyProblem(self.name, self.lines.line_of(*path), message))

    def unknown_keys(self, table: dict, path: tuple, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                self.problem(
                    (*path, key),
                    f"unknown key {_dotted((*path, key))!r} (expected one of: {', '.join(sorted(allowed))})",
                )

    def table(self, parent: dict, path: tuple, key: str, *, required: bool = False) -> dict:
        value = parent.get(key)
        if value is None:
            if required:
                self.problem(path, f"missing table [{_dotted((*path, key))}]")
            return {}
        if not isinstance(value, dict):
            self.problem((*path, key), f"{_dotted((*path, key))} must be a table")
            return {}
        return value

    def duration(
        self, table: dict, path: tuple, key: str, *, default: int | None, minimum: int = 1, maximum: int | None = None
    ) -> int | None:
        if key not in table:
            if default is None:
                self.problem(path, f'missing {_dotted((*path, key))} (a duration such as "15m")')
            return default
        seconds = parse_duration(table[key])
        where = (*path, key)
        if seconds is None:
            self.problem(
                where,
                f"{_dotted(where)} = {table[key]!r} is not a duration "
                '(whole seconds, or text such as "90s", "15m", "4h", "1d")',
            )
            return default
        if seconds < minimum or (maximum is not None and seconds > maximum):
            bound = (
                f"between {format_duration(minimum)} and {format_duration(maximum)}"
                if maximum
                else f"at least {format_duration(minimum)}"
            )
            self.problem(where, f"{_dotted(where)} must be {bound}")
            return default
        return seconds

    def integer(
        self, table: dict, path: tuple, key: str, *, default: int | None, minimum: int, maximum: int | None = None
    ) -> int | None:
        where = (*path, key)
        if key not in table:
            if default is None:
                self.problem(path, f"missing {_dotted(where)}")
            return default
        value = table[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            self.problem(where, f"{_dotted(where)} = {value!r} must be a whole number {bound}")
            return default
        return value

    def choice(
        self, table: dict, path: tuple, key: str, choices: tuple[str, ...], *, default: str | None = None
    ) -> str | None:
        where = (*path, key)
        if key not in table:
            if default is None:
                self.problem(path, f"missing {_dotted(where)} (one of: {', '.join(choices)})")
            return default
        if table[key] not in choices:
            self.problem(where, f"{_dotted(where)} = {table[key]!r} must be one of: {', '.join(choices)}")
            return default
        return table[key]

    def text(self, table: dict, path: tuple, key: str, *, required: bool = False) -> str:
        where = (*path, key)
        value = table.get(key, "")
        if not isinstance(value, str):
            self.problem(where, f"{_dotted(where)} must be text")
            return ""
        if required and not value.strip():
            self.problem(where if key in table else path, f"{_dotted(where)} must say something")
        return value.strip()

    def boolean(self, table: dict, path: tuple, key: str, *, default: bool) -> bool:
        if key not in table:
            return default
        if not isinstance(table[key], bool):
            self.problem((*path, key), f"{_dotted((*path, key))} must be true or false")
            return default
        return table[key]

    def globs(self, table: dict, path: tuple, key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            self.problem((*path, key), f'{_dotted((*path, key))} must be a non-empty list of patterns such as "prod:*"')
            return ()
        return tuple(value)

    def array_of_tables(self, key: str) -> list[dict]:
        value = (self.data or {}).get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem((key,), f"{key} must be written as [[{key}]] tables")
            return []
        return value


def _dotted(path: tuple) -> str:
    return ".".join(
        f'"{p}"'
        if isinstance(p, str) and not re.fullmatch(r"[A-Za-z0-9_-]+", p)
        else (f"[{p}]" if isinstance(p, int) else p)
        for p in path
    ).replace(".[", "[")


def _line_from_message(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _strip_position(message: str) -> str:
    return re.sub(r"\s*\(at line \d+, column \d+\)", "", message)


def _read_scopes(reader: _Reader) -> tuple[dict[str, str], dict[str, str]]:
    data = reader.data or {}
    reader.unknown_keys(data, (), {"scopes"})
    scopes = reader.table(data, (), "scopes", required=True)
    risk, descriptions = {}, {}
    for scope, entry in scopes.items():
        path = ("scopes", scope)
        if not is_scope(scope) or "*" in scope:
            reader.problem(path, f"{scope!r} is not a scope of the form tool:action (lower case, no wildcard)")
            continue
        if not isinstance(entry, dict):
            reader.problem(path, f'scopes."{scope}" must be a table with description and risk')
            continue
        reader.unknown_keys(entry, path, {"description", "risk"})
        descriptions[scope] = reader.text(entry, path, "description", required=True)
        risk[scope] = reader.choice(entry, path, "risk", RISKS) or "high"
    return risk, descriptions


_RAISER_CONDITIONS = {
    "duration_over",
    "max_actions_over",
    "may_delegate",
    "delegation_depth_over",
    "wildcard_resource",
    "unbounded_resource",
    "resource_in",
    "resource_like",
    "scope_like",
}


def _read_risk(reader: _Reader) -> tuple[dict[str, RiskRule], int, tuple[Raiser, ...]]:
    data = reader.data or {}
    reader.unknown_keys(data, (), {"credentials", "levels", "raise"})
    credentials = reader.table(data, (), "credentials")
    reader.unknown_keys(credentials, ("credentials",), {"ttl_ceiling"})
    ceiling = reader.duration(
        credentials, ("credentials",), "ttl_ceiling", default=900, maximum=CREDENTIAL_TTL_HARD_CEILING
    )
    levels = reader.table(data, (), "levels", required=True)
    reader.unknown_keys(levels, ("levels",), set(RISKS))
    rules: dict[str, RiskRule] = {}
    for risk in RISKS:
        path = ("levels", risk)
        level = reader.table(levels, ("levels",), risk, required=bool(levels))
        if not level:
            continue
        reader.unknown_keys(level, path, {"required_approvals", "max_envelope", "max_credential_ttl"})
        approvals = reader.integer(level, path, "required_approvals", default=None, minimum=1, maximum=MAX_APPROVALS)
        envelope = reader.duration(level, path, "max_envelope", default=None, minimum=60, maximum=MAX_ENVELOPE_CEILING)
        ttl = reader.duration(level, path, "max_credential_ttl", default=None, maximum=ceiling)
        if approvals is not None and envelope is not None and ttl is not None:
            rules[risk] = RiskRule(approvals, envelope, ttl)
    if len(rules) == len(RISKS):
        if rules["high"].required_approvals < 2:
            reader.problem(("levels", "high", "required_approvals"), "high risk needs at least 2 different approvers")
        for lower, higher in (("low", "medium"), ("medium", "high")):
            if rules[higher].required_approvals < rules[lower].required_approvals:
                reader.problem(
                    ("levels", higher, "required_approvals"),
                    f"{higher} risk cannot need fewer approvals than {lower} risk",
                )
    raisers = []
    names: set[str] = set()
    for index, entry in enumerate(reader.array_of_tables("raise")):
        path = ("raise", index)
        reader.unknown_keys(entry, path, {"name", "description", "to", "when"})
        name = reader.text(entry, path, "name", required=True)
        if name and not _NAME_RE.fullmatch(name):
            reader.problem((*path, "name"), f"name {name!r} must be lower-case letters, digits and dashes")
        if name in names:
            reader.problem((*path, "name"), f"two raise rules are named {name!r}")
        names.add(name)
        to = reader.choice(entry, path, "to", ("medium", "high"))
        when = reader.table(entry, path, "when", required=True)
        reader.unknown_keys(when, (*path, "when"), _RAISER_CONDITIONS)
        conditions: dict = {}
        for key in when:
            where = (*path, "when")
            if key in ("duration_over",):
                conditions[key] = reader.duration(when, where, key, default=0, minimum=0)
            elif key in ("max_actions_over", "delegation_depth_over"):
                conditions[key] = reader.integer(when, where, key, default=0, minimum=0)
            elif key in ("may_delegate", "wildcard_resource", "unbounded_resource"):
                conditions[key] = reader.boolean(when, where, key, default=True)
            elif key in ("resource_in", "resource_like", "scope_like"):
                conditions[key] = reader.globs(when, where, key)
        if isinstance(entry.get("when"), dict) and not when:
            reader.problem((*path, "when"), "a raise rule needs at least one condition")
        if name and to and conditions:
            raisers.append(Raiser(name, reader.text(entry, path, "description"), to, conditions))
    return rules, ceiling, tuple(raisers)


def _read_auto_approve(reader: _Reader, rules: dict[str, RiskRule]) -> tuple[AutoApproveRule, ...]:
    data = reader.data or {}
    reader.unknown_keys(data, (), {"rule"})
    out, names = [], set()
    for index, entry in enumerate(reader.array_of_tables("rule")):
        path = ("rule", index)
        reader.unknown_keys(
            entry,
            path,
            {"name", "description", "max_risk", "max_duration", "max_actions", "allow_delegation", "scopes"},
        )
        name = reader.text(entry, path, "name", required=True)
        if name and not _NAME_RE.fullmatch(name):
            reader.problem((*path, "name"), f"name {name!r} must be lower-case letters, digits and dashes")
        if name in names:
            reader.problem((*path, "name"), f"two auto-approve rules are named {name!r}")
        names.add(name)
        # Medium and high risk always need people; a rule can only ever approve low risk.
        max_risk = reader.choice(entry, path, "max_risk", ("low",))
        low_max = rules["low"].max_envelope_seconds if "low" in rules else MAX_ENVELOPE_CEILING
        duration = reader.duration(entry, path, "max_duration", default=None, maximum=low_max)
        actions = reader.integer(entry, path, "max_actions", default=None, minimum=1)
        delegation = reader.boolean(entry, path, "allow_delegation", default=False)
        scopes = reader.globs(entry, path, "scopes") if "scopes" in entry else ()
        if name and max_risk and duration is not None and actions is not None:
            out.append(
                AutoApproveRule(
                    name, reader.text(entry, path, "description"), max_risk, duration, actions, delegation, scopes
                )
            )
    return tuple(out)


def _read_lifecycle(reader: _Reader) -> tuple[int, int, int, int]:
    data = reader.data or {}
    reader.unknown_keys(data, (), {"pending", "sessions", "drift", "credentials"})
    pending = reader.table(data, (), "pending")
    reader.unknown_keys(pending, ("pending",), {"expire_after"})
    sessions = reader.table(data, (), "sessions")
    reader.unknown_keys(sessions, ("sessions",), {"idle_limit"})
    drift = reader.table(data, (), "drift")
    reader.unknown_keys(drift, ("drift",), {"revoke_after"})
    credentials = reader.table(data, (), "credentials")
    reader.unknown_keys(credentials, ("credentials",), {"max_live"})
    return (
        reader.duration(pending, ("pending",), "expire_after", default=24 * 3600, minimum=60, maximum=30 * 86400),
        reader.duration(sessions, ("sessions",), "idle_limit", default=900, minimum=60, maximum=7 * 86400),
        reader.integer(drift, ("drift",), "revoke_after", default=3, minimum=0, maximum=1000),
        reader.integer(
            credentials, ("credentials",), "max_live", default=DEFAULT_MAX_LIVE_CREDENTIALS, minimum=0, maximum=10_000
        ),
    )


def version_of(files: list[PolicyFile] | tuple[PolicyFile, ...]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        digest.update(f.name.encode() + b"\0" + f.text.encode() + b"\0")
    return digest.hexdigest()[:16]


def read_policy_dir(directory: Path) -> tuple[list[PolicyFile], list[PolicyProblem]]:
    files, problems = [], []
    if not directory.is_dir():
        return [], [PolicyProblem(str(directory), None, "the policy directory does not exist")]
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix == ".md" or path.is_dir():
            continue
        if path.name not in POLICY_FILES:
            problems.append(
                PolicyProblem(
                    path.name,
                    None,
                    f"not a policy file (expected: {', '.join(POLICY_FILES)}; documentation may be *.md)",
                )
            )
            continue
        try:
            files.append(PolicyFile(path.name, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(PolicyProblem(path.name, None, f"cannot be read: {exc}"))
    present = {f.name for f in files}
    for name in REQUIRED_FILES:
        if name not in present and not any(p.file == name for p in problems):
            problems.append(PolicyProblem(name, None, "missing: every policy needs this file"))
    return files, problems


def check_policy_dir(directory: Path | str) -> tuple[Policy | None, list[PolicyProblem]]:
    """Read and validate a policy directory; never raises for a broken policy."""
    directory = Path(directory)
    files, problems = read_policy_dir(directory)
    texts = {f.name: f.text for f in files}

    def reader(name: str) -> _Reader | None:
        # A file that is not valid TOML gets its one syntax error, not a cascade of "missing" ones.
        if name not in texts:
            return None
        r = _Reader(name, texts[name], problems)
        return r if r.data is not None else None

    scope_risk, descriptions = {}, {}
    if r := reader(SCOPES_FILE):
        scope_risk, descriptions = _read_scopes(r)
    rules, ceiling, raisers = {}, 900, ()
    if r := reader(RISK_FILE):
        rules, ceiling, raisers = _read_risk(r)
    auto = ()
    if r := reader(AUTO_APPROVE_FILE):
        auto = _read_auto_approve(r, rules)
    pending, idle, drift, max_live = 24 * 3600, 900, 3, DEFAULT_MAX_LIVE_CREDENTIALS
    if r := reader(LIFECYCLE_FILE):
        pending, idle, drift, max_live = _read_lifecycle(r)
    guardrails, guardrail_problems = load_guardrails(texts.get(GUARDRAILS_FILE), texts.get(SCHEMA_FILE))
    problems.extend(guardrail_problems)
    if problems:
        return None, problems
    policy = Policy(
        version=version_of(files),
        scope_risk=scope_risk,
        risk_rules=rules,
        idle_limit_seconds=idle,
        pending_max_seconds=pending,
        drift_revoke_after=drift,
        max_live_credentials=max_live,
        scope_descriptions=descriptions,
        credential_ttl_ceiling=ceiling,
        raisers=raisers,
        auto_approve_rules=auto,
        guardrails=guardrails,
        directory=directory,
        files=tuple(files),
    )
    return policy, []


def load_policy(directory: Path | str) -> Policy:
    """The validated policy in ``directory``; ``PolicyError`` listing every problem otherwise."""
    policy, problems = check_policy_dir(directory)
    if policy is None:
        raise PolicyError(Path(directory), problems)
    return policy


# --- the running policy ---------------------------------------------------------------------------

_lock = threading.Lock()
_active: Policy | None = None


def policy_dir() -> Path:
    return Path(settings.MANDATE_POLICY_DIR)


def active_policy() -> Policy:
    """The policy this process runs: loaded once, then cached (``reload_policy()`` re-reads it)."""
    policy = _active
    if policy is None:
        with _lock:
            policy = _active if _active is not None else _load_active()
    return policy


def _load_active() -> Policy:
    global _active
    _active = load_policy(policy_dir())
    return _active


def reload_policy() -> Policy:
    """Re-read the policy directory; on a broken policy raise and keep running the previous one."""
    with _lock:
        return _load_active()


def reset_policy_cache() -> None:
    """Forget the running policy; the next ``active_policy()`` reads the directory again."""
    global _active
    with _lock:
        _active = None


def policy_summary() -> dict:
    """For the read-only policy page: what runs, and what the directory on disk holds now."""
    try:
        running = active_policy()
    except PolicyError:
        running = None
    on_disk, problems = check_policy_dir(policy_dir())
    files, _ = read_policy_dir(policy_dir())
    return {
        "directory": str(policy_dir()),
        "version": running.version if running else None,
        "files": [
            {"name": f.name, "text": f.text, "lines": f.text.count("\n") + 1}
            for f in (running.files if running else ())
        ],
        "disk_version": on_disk.version if on_disk else (version_of(files) if files else None),
        "errors": [{"file": p.file, "line": p.line, "message": p.message, "text": str(p)} for p in problems],
        "policy": running,
    }
