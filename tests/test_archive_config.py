"""archive_config prints lines PostgreSQL accepts as they are (the cluster test pastes them); here its refusals."""
import pytest
from django.core.management import CommandError, call_command

from apps.backups import wal_config


@pytest.fixture
def shop(db):
    from apps.databases.models import DatabaseTarget

    return DatabaseTarget.objects.create(name="shop", host="h", port=5432, dbname="d", user="u")


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("archive_config", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_lines_are_quoted_for_the_shell_then_for_postgresql_conf(shop):
    out = run("shop", "--env-file", "/etc/it's 100%.env", "--python", "/opt/app/bin/python")
    lines = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line and not line.startswith("#"))
    assert lines["archive_mode"] == "on" and lines["archive_timeout"] == "60"
    manage = wal_config.Invocation.current(env_file="/x").manage
    # shell: '/etc/it'"'"'s 100%.env'; PostgreSQL placeholders: % doubled; conf string: ' doubled
    env = "BACKUPSITE_ENV_FILE=''/etc/it''\"''\"''s 100%%.env''"
    assert lines["archive_command"] == f"'{env} /opt/app/bin/python {manage} wal_push shop \"%p\"'"
    assert lines["restore_command"] == f"'{env} /opt/app/bin/python {manage} wal_fetch shop \"%f\" \"%p\"'"
    assert "must be able to" in out and "/etc/it's 100%.env" in out


def test_with_a_spool_the_shell_acknowledges_by_marker(shop):
    out = run("shop", "--env-file", "/x.env", "--python", "/p", "--spool", "/var/spool/it's 100%")
    command = next(line.split(" = ", 1)[1] for line in out.splitlines() if line.startswith("archive_command"))
    marker = "''/var/spool/it''\"''\"''s 100%%''/%f.ok"
    assert command.startswith(f"'if [ -f {marker} ] && [ \"$(sha256sum < \"%p\" | cut -c1-64)\" = \"$(cat {marker})\" ]; "
                              f"then rm -f {marker}; else ")
    assert "wal_push shop \"%p\" --spool ''/var/spool/it''\"''\"''s 100%%'' --ahead 64; fi'" in command
    assert "write /var/spool/it's 100%" in out
    with pytest.raises(CommandError, match="--spool must be an absolute path"):
        run("shop", "--env-file", "/x.env", "--spool", "spool")


def test_refusals(shop, settings):
    settings.ENV_FILE = ""
    with pytest.raises(CommandError, match="--env-file"):
        run("shop")
    with pytest.raises(CommandError, match="absolute path"):
        run("shop", "--env-file", "relative.env")
    with pytest.raises(CommandError, match="No target named"):
        run("nope", "--env-file", "/x.env")
    with pytest.raises(CommandError, match="at least 1 second"):
        run("shop", "--env-file", "/x.env", "--archive-timeout", "0")
    settings.ENV_FILE = "/etc/backupsite.env"  # the file this process was started with is the default
    assert "BACKUPSITE_ENV_FILE=/etc/backupsite.env " in run("shop")
