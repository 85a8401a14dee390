from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tasks", "0002_posture_standing_exceptions")]

    operations = [
        migrations.AddIndex(
            model_name="activityevent",
            index=models.Index(
                condition=models.Q(("drift", True)), fields=["-id"], name="activity_drift_idx"
            ),
        ),
    ]
