"""The few REST calls an agent's set-up needs, made with an owner's API token: register an instance
(with its public key, or a workload token from a trusted issuer, or both) and request an envelope."""

from __future__ import annotations

from typing import Any

import httpx

from mandate_sdk.credentials import BearerToken, error_from


class Mandate:
    """REST calls under ``/api/v1`` with an API token (an agent owner's for these)."""

    def __init__(self, base_url: str, api_token: str, *, client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=10.0)
        self._auth = BearerToken(api_token)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._client.request(method, f"{self.base_url}/api/v1/{path}", json=body, auth=self._auth)
        if response.status_code >= 400:
            raise error_from(response)
        answer: dict[str, Any] = response.json()
        return answer

    def register_instance(
        self,
        agent: str,
        *,
        public_jwk: dict[str, str] | None = None,
        workload_token: str | None = None,
        label: str = "",
    ) -> dict[str, Any]:
        """A new instance of ``agent`` (its slug); the answer carries ``id`` and ``spiffe_id``."""
        body: dict[str, Any] = {"label": label}
        if public_jwk is not None:
            body["public_jwk"] = public_jwk
        if workload_token is not None:
            body["workload_token"] = workload_token
        return self._call("POST", f"agents/{agent}/instances/", body)

    def request_envelope(
        self,
        instance: str,
        *,
        intent: str,
        scopes: list[str],
        resources: list[str],
        duration_seconds: int,
        max_actions: int,
        **terms: Any,
    ) -> dict[str, Any]:
        """Ask for a task envelope for ``instance``; it is ``pending`` until approved (or approved
        at once when a policy rule auto-approves it). Other terms (``may_delegate``,
        ``delegation_depth``, ``audiences`` where the server knows them) pass through."""
        body = {
            "instance": instance,
            "intent": intent,
            "scopes": scopes,
            "resources": resources,
            "duration_seconds": duration_seconds,
            "max_actions": max_actions,
            **terms,
        }
        return self._call("POST", "envelopes/", body)

    def envelope(self, envelope_id: str) -> dict[str, Any]:
        return self._call("GET", f"envelopes/{envelope_id}/")

    def close(self) -> None:
        self._client.close()
