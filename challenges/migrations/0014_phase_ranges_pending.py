from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("challenges", "0013_result_case_values")]

    operations = [
        migrations.AddField(
            model_name="phase",
            name="ranges_pending_since",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="First new result whose rank ranges are not computed yet (none "
                "pending: empty). The ranges are computed off the scoring path, once the board "
                "is quiet.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="phase",
            name="ranges_due_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When the pending rank ranges are computed: pushed back by each new "
                "result, up to SCANBENCH_RANGES_MAX_WAIT_S after the first.",
                null=True,
            ),
        ),
    ]
