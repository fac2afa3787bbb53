from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("challenges", "0005_phase_metrics_help_text"),
    ]

    operations = [
        migrations.AddField(
            model_name="phase",
            name="show_case_results",
            field=models.BooleanField(
                blank=True,
                default=None,
                help_text="Participants see their per-case results on the public part. Empty: "
                "decided by the task (on for segmentation; off for classification, where "
                "per-case correctness would reveal the hidden labels).",
                null=True,
            ),
        ),
    ]
