"""The gateway side: ask Mandate before letting an agent's call through (``/api/v1/decisions`` and
the AuthZEN 1.0 endpoints), with the gateway's own API token.

``resource`` is Mandate's resource string, ``type:id`` (e.g. ``repo:acme/api``); for AuthZEN it is
split at the first colon into the standard's ``{"type", "id"}``. ``Gateway`` is synchronous,
``AsyncGateway`` the same calls for asyncio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jwt

from mandate_sdk.credentials import BearerToken, error_from

Semantic = Literal["execute_all", "deny_on_first_deny", "permit_on_first_permit"]


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    decision_id: str | None = None
    remaining_actions: int | None = None
    detail: str = ""
    error: dict[str, Any] | None = field(default=None)  # a malformed batch item's error

    @classmethod
    def from_authzen(cls, answer: dict[str, Any]) -> Decision:
        context = answer.get("context") or {}
        error = context.get("error")
        return cls(
            allow=bool(answer.get("decision")),
            reason=str(context.get("reason", "malformed" if error else "")),
            decision_id=context.get("decision_id"),
            remaining_actions=context.get("remaining_actions"),
            detail=str((context.get("reason_admin") or {}).get("en", error.get("message", "") if error else "")),
            error=error,
        )


@dataclass(frozen=True)
class Evaluation:
    """One item of ``evaluate_many``; unset members take the call's defaults."""

    action: str | None = None
    resource: str | None = None
    token: str | None = None
    context: dict[str, Any] | None = None


def authzen_resource(resource: str) -> dict[str, str]:
    kind, colon, identifier = resource.partition(":")
    if not colon:
        raise ValueError(f"a resource is 'type:id', e.g. repo:acme/api; got {resource!r}")
    return {"type": kind, "id": identifier}


def authzen_subject(token: str) -> dict[str, Any]:
    """The agent as an AuthZEN subject: its SPIFFE ID (the credential's ``sub``; Mandate checks the
    two agree and verifies the credential itself) and the credential."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        spiffe_id = str(claims.get("sub") or "unknown")
    except jwt.PyJWTError:
        spiffe_id = "unknown"  # Mandate answers token_invalid
    return {"type": "agent", "id": spiffe_id, "properties": {"token": token}}


class _Calls:
    """The requests and how their answers read, shared by both clients."""

    def __init__(self, base_url: str, api_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = BearerToken(api_token)

    def _decide(self, token: str, scope: str, resource: str, context: dict[str, Any] | None) -> tuple[str, dict]:
        body: dict[str, Any] = {"token": token, "scope": scope, "resource": resource}
        if context:
            body["context"] = context
        return "/api/v1/decisions", body

    def _evaluate(self, token: str, action: str, resource: str, context: dict[str, Any] | None) -> tuple[str, dict]:
        body: dict[str, Any] = {
            "subject": authzen_subject(token),
            "action": {"name": action},
            "resource": authzen_resource(resource),
        }
        if context:
            body["context"] = context
        return "/access/v1/evaluation", body

    def _evaluate_many(
        self,
        token: str | None,
        items: Sequence[Evaluation],
        action: str | None,
        resource: str | None,
        context: dict[str, Any] | None,
        semantic: Semantic,
    ) -> tuple[str, dict]:
        body: dict[str, Any] = {"options": {"evaluations_semantic": semantic}, "evaluations": []}
        if token is not None:
            body["subject"] = authzen_subject(token)
        if action is not None:
            body["action"] = {"name": action}
        if resource is not None:
            body["resource"] = authzen_resource(resource)
        if context:
            body["context"] = context
        for item in items:
            entry: dict[str, Any] = {}
            if item.token is not None:
                entry["subject"] = authzen_subject(item.token)
            if item.action is not None:
                entry["action"] = {"name": item.action}
            if item.resource is not None:
                entry["resource"] = authzen_resource(item.resource)
            if item.context is not None:
                entry["context"] = item.context
            body["evaluations"].append(entry)
        return "/access/v1/evaluations", body

    def _search(self, token: str, resource: str, context: dict[str, Any] | None) -> tuple[str, dict]:
        body: dict[str, Any] = {"subject": authzen_subject(token), "resource": authzen_resource(resource)}
        if context:
            body["context"] = context
        return "/access/v1/search/action", body

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            raise error_from(response)
        answer: dict[str, Any] = response.json()
        return answer

    @staticmethod
    def _decision(answer: dict[str, Any]) -> Decision:
        return Decision(
            allow=bool(answer.get("allow")),
            reason=str(answer.get("reason", "")),
            decision_id=answer.get("decision_id"),
            remaining_actions=answer.get("remaining_actions"),
            detail=str(answer.get("detail", "")),
        )

    @staticmethod
    def _decisions(answer: dict[str, Any]) -> list[Decision]:
        if "evaluations" not in answer:  # a batch without items is answered as one evaluation
            return [Decision.from_authzen(answer)]
        return [Decision.from_authzen(item) for item in answer["evaluations"]]

    @staticmethod
    def _actions(answer: dict[str, Any]) -> list[str]:
        return [str(result["name"]) for result in answer.get("results", [])]


class Gateway(_Calls):
    """A gateway's calls to Mandate. Each allowed decision spends one action of the envelope."""

    def __init__(self, base_url: str, api_token: str, *, client: httpx.Client | None = None) -> None:
        super().__init__(base_url, api_token)
        self._client = client or httpx.Client(timeout=10.0)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer(self._client.post(self.base_url + path, json=body, auth=self._auth))

    def decide(self, token: str, scope: str, resource: str, context: dict[str, Any] | None = None) -> Decision:
        """``POST /api/v1/decisions``."""
        return self._decision(self._post(*self._decide(token, scope, resource, context)))

    def evaluate(self, token: str, action: str, resource: str, context: dict[str, Any] | None = None) -> Decision:
        """AuthZEN Access Evaluation: ``action`` is the scope."""
        return Decision.from_authzen(self._post(*self._evaluate(token, action, resource, context)))

    def evaluate_many(
        self,
        items: Sequence[Evaluation],
        *,
        token: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        context: dict[str, Any] | None = None,
        semantic: Semantic = "execute_all",
    ) -> list[Decision]:
        """AuthZEN Access Evaluations: the answers in order (fewer when ``semantic`` stopped early)."""
        path, body = self._evaluate_many(token, items, action, resource, context, semantic)
        return self._decisions(self._post(path, body))

    def search_actions(self, token: str, resource: str, context: dict[str, Any] | None = None) -> list[str]:
        """AuthZEN Action Search: the scopes a call on ``resource`` would be allowed right now."""
        return self._actions(self._post(*self._search(token, resource, context)))

    def close(self) -> None:
        self._client.close()


class AsyncGateway(_Calls):
    """``Gateway`` for asyncio."""

    def __init__(self, base_url: str, api_token: str, *, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, api_token)
        self._client = client or httpx.AsyncClient(timeout=10.0)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer(await self._client.post(self.base_url + path, json=body, auth=self._auth))

    async def decide(self, token: str, scope: str, resource: str, context: dict[str, Any] | None = None) -> Decision:
        return self._decision(await self._post(*self._decide(token, scope, resource, context)))

    async def evaluate(self, token: str, action: str, resource: str, context: dict[str, Any] | None = None) -> Decision:
        return Decision.from_authzen(await self._post(*self._evaluate(token, action, resource, context)))

    async def evaluate_many(
        self,
        items: Sequence[Evaluation],
        *,
        token: str | None = None,
        action: str | None = None,
        resource: str | None = None,
        context: dict[str, Any] | None = None,
        semantic: Semantic = "execute_all",
    ) -> list[Decision]:
        path, body = self._evaluate_many(token, items, action, resource, context, semantic)
        return self._decisions(await self._post(path, body))

    async def search_actions(self, token: str, resource: str, context: dict[str, Any] | None = None) -> list[str]:
        return self._actions(await self._post(*self._search(token, resource, context)))

    async def aclose(self) -> None:
        await self._client.aclose()
