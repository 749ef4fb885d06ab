# GPU leases for host-level scheduling (issue 18).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0008_release_hub_folder'),
    ]

    operations = [
        migrations.CreateModel(
            name='GpuLease',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('host', models.CharField(max_length=200)),
                ('index', models.PositiveIntegerField()),
                ('worker', models.CharField(max_length=200)),
                ('job_kind', models.CharField(max_length=16)),
                ('job_id', models.PositiveBigIntegerField()),
                ('scope', models.CharField(help_text='gpu (a one-GPU job) or host (a job over the whole host)', max_length=8)),
                ('expires_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['host', 'index'],
                'constraints': [models.UniqueConstraint(fields=('host', 'index'), name='one_lease_per_gpu')],
            },
        ),
    ]
