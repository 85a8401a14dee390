"""The lifecycle verbs of agents and instances over REST (``POST /agents/{slug}/pause`` …).

They sit on the identities' viewsets (same paths, same schema) but live here, beside the verbs they
call in ``tasks.lifecycle``: pausing or retiring cascades into envelopes and credentials, which
identities know nothing of.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action

from core.api import ReasonSerializer, errors
from identities.api import agents, instances
from identities.api.agents import AgentSerializer
from identities.api.instances import InstanceSerializer, render_instance
from tasks import lifecycle

_LOCK_NOTE = (
    "A pause by an identity admin or by a policy rule is a lock: only an identity admin may resume it, "
    "and anyone else gets 403 with code `pause_locked` and a detail naming who paused it and why. "
    "An owner's own pause is theirs to lift."
)
_AGENT_VERB = {"request": ReasonSerializer, "responses": {200: AgentSerializer, **errors(400, 403, 404, 409)}}
_INSTANCE_VERB = {"request": ReasonSerializer, "responses": {200: InstanceSerializer, **errors(400, 403, 404, 409)}}


class AgentViewSet(agents.AgentViewSet):
    @extend_schema(
        summary="Change an agent's name, description, ceiling or longest envelope",
        description="Name, description and narrowing apply at once (200); a narrowing revokes live envelopes "
        "that hold a removed scope and denies pending ones that ask for one. Widening the `ceiling` or raising "
        "`max_envelope_seconds` answers 202: the agent keeps what is in force and shows the request as "
        "`pending_change` until an identity admin other than the requester approves it. A second widening while "
        "one is pending answers 409 `change_pending`.",
        request=agents.AgentUpdateSerializer,
        responses={
            200: AgentSerializer,
            202: OpenApiResponse(AgentSerializer, description="The widening waits for approval."),
            **errors(400, 403, 404, 409),
        },
    )
    def partial_update(self, request, *args, **kwargs):
        agent = self.get_object()
        body = agents.AgentUpdateSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        agent, pending = lifecycle.update_agent(
            agent=agent, actor=request.user, changes=body.validated_data, request=request
        )
        return self._render(agent, status.HTTP_202_ACCEPTED if pending else status.HTTP_200_OK)

    @extend_schema(
        summary="Pause an agent and its active instances",
        description="A pause by an identity admin is a lock only an identity admin lifts.",
        **_AGENT_VERB,
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, slug=None):
        return self._lifecycle(request, lifecycle.pause_agent)

    @extend_schema(
        summary="Resume a paused agent and the instances paused with it",
        description=_LOCK_NOTE,
        **_AGENT_VERB,
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, slug=None):
        return self._lifecycle(request, lifecycle.resume_agent)

    @extend_schema(summary="Retire an agent for good, with all its instances", **_AGENT_VERB)
    @action(detail=True, methods=["post"])
    def retire(self, request, slug=None):
        return self._lifecycle(request, lifecycle.retire_agent)

    def _lifecycle(self, request, transition):
        agent = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = transition(agent=agent, actor=request.user, request=request, **body.validated_data)
        return self._render(agent)


class InstanceViewSet(instances.InstanceViewSet):
    @extend_schema(summary="Pause an instance; its live credentials are revoked", **_INSTANCE_VERB)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._lifecycle(request, lifecycle.pause_instance)

    @extend_schema(
        summary="Resume a paused instance (its agent must be active)", description=_LOCK_NOTE, **_INSTANCE_VERB
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._lifecycle(request, lifecycle.resume_instance)

    @extend_schema(summary="Retire an instance for good; its envelopes and credentials end", **_INSTANCE_VERB)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        return self._lifecycle(request, lifecycle.retire_instance)

    def _lifecycle(self, request, transition):
        instance = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        instance = transition(instance=instance, actor=request.user, request=request, **body.validated_data)
        return render_instance(request, instance)
