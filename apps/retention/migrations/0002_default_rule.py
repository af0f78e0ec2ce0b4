"""The seed's retention table as the default rule (daily 30 d, incremental 7 d, weekly 12 w, monthly 12 mo then
archive, archive 7 y; last 3 fulls; PITR window 30 d)."""
from django.db import migrations


def create(apps, schema_editor):
    RetentionRule = apps.get_model("retention", "RetentionRule")
    if not RetentionRule.objects.filter(database_target=None).exists():
        RetentionRule.objects.create(name="default")


class Migration(migrations.Migration):
    dependencies = [("retention", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
