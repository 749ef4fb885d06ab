from django.db import migrations, models


def old_layout(apps, schema_editor):
    """Releases published before the `dynamic/` layout put their files in `<QUANT>/`."""
    Release = apps.get_model("registry", "Release")
    for r in Release.objects.filter(state="published", hub_folder="").select_related("variant__recipe"):
        Release.objects.filter(pk=r.pk).update(hub_folder=r.variant.recipe.name)


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0007_release_policy'),
    ]

    operations = [
        migrations.AddField(
            model_name='release',
            name='hub_folder',
            field=models.CharField(blank=True, help_text='The folder of the Hub repo the files went to (registry.hub): kept, so a later layout never breaks pulls of this release', max_length=200),
        ),
        migrations.RunPython(old_layout, migrations.RunPython.noop),
    ]
