"""Who paused an agent or instance, why, and whether the pause is a lock only identity admins lift.

Rows paused before this migration take both from the trail: the latest ``*.paused`` event names who
paused; a pause by anyone but the agent's owner (an identity admin, a policy rule) becomes a lock."""

from django.db import migrations, models


def _mark_paused_rows(apps, schema_editor):
    Agent = apps.get_model("identities", "Agent")
    Instance = apps.get_model("identities", "Instance")
    AuditEvent = apps.get_model("audit", "AuditEvent")
    for model, verb, owner_path in (
        (Agent, "agent.paused", "owner_id"),
        (Instance, "instance.paused", "agent__owner_id"),
    ):
        for pk, owner_id in model.objects.filter(status="paused").values_list("pk", owner_path).iterator():
            event = (
                AuditEvent.objects.filter(verb=verb, target_id=str(pk))
                .order_by("-id")
                .values("actor_type", "actor", "actor_user_id", "reason")
                .first()
            )
            if event is None:
                continue
            by_owner = event["actor_type"] == "user" and event["actor_user_id"] == owner_id
            by = event["actor"] if event["actor_type"] == "user" else f"{event['actor_type']} {event['actor']}"
            model.objects.filter(pk=pk).update(
                paused_by=by[:200], pause_reason=(event["reason"] or "")[:500], pause_locked=not by_owner
            )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_keyed_checkpoints"),
        ("identities", "0005_sso_sessions"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="pause_locked",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="agent",
            name="pause_reason",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="agent",
            name="paused_by",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="instance",
            name="pause_locked",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="instance",
            name="pause_reason",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="instance",
            name="paused_by",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.RunPython(_mark_paused_rows, migrations.RunPython.noop),
    ]
