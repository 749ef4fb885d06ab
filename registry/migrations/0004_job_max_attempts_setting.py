from django.db import migrations, models

import registry.models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0003_job_enqueued_at'),
    ]

    operations = [
        migrations.AlterField(
            model_name='benchmarkjob',
            name='max_attempts',
            field=models.PositiveIntegerField(default=registry.models.default_max_attempts),
        ),
        migrations.AlterField(
            model_name='quantizationjob',
            name='max_attempts',
            field=models.PositiveIntegerField(default=registry.models.default_max_attempts),
        ),
    ]
