import json

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_backup_cli_round_trip(target, capsys):
    call_command("db_backup", "sample")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "succeeded"
    assert len(out["sha256"]) == 64
