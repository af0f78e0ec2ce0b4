"""Item 11: one `migrate` on a fresh database gives the role groups every permission of the project's apps
(the sync used to run right after `core`, before the later apps' permissions existed)."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from apps.core.roles import PROJECT_APPS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_first_migrate_gives_groups_all_permissions(tmp_path):
    db = tmp_path / "fresh.sqlite3"
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{db}"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                   capture_output=True)

    with sqlite3.connect(db) as c:
        def perms(group: str) -> set[tuple[str, str]]:
            return set(c.execute(
                "SELECT ct.app_label, p.codename FROM auth_group g JOIN auth_group_permissions gp ON gp.group_id = g.id"
                " JOIN auth_permission p ON p.id = gp.permission_id JOIN django_content_type ct"
                " ON ct.id = p.content_type_id WHERE g.name = ?", [group]).fetchall())

        marks = ",".join("?" * len(PROJECT_APPS))
        every = set(c.execute(
            "SELECT ct.app_label, p.codename FROM auth_permission p JOIN django_content_type ct"
            f" ON ct.id = p.content_type_id WHERE ct.app_label IN ({marks})", PROJECT_APPS).fetchall())
    views = {p for p in every if p[1].startswith("view_")}
    assert {app for app, _ in views} >= {"core", "storage", "databases", "backups", "verification", "jobs"}
    assert perms("viewer") == views
    assert perms("operator") == views
    assert perms("admin") == every
