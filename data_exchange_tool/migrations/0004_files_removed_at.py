from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("data_exchange_tool", "0003_progress"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="files_removed_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When the stored source and chunks were removed "
                "(DATA_EXCHANGE_KEEP_FILES_FOR).",
                null=True,
                verbose_name="files removed",
            ),
        ),
    ]
