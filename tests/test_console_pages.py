"""Console pages in Django's client: every page renders for a viewer, every state-changing console action is
marked with its role (permissions.actions()) and refuses lower roles with a 403, bad input is a 4xx with the
reason, and actions go through the API's services (jobs, audit events)."""
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.backups.models import Backup, BackupStatus, WalSegment
from apps.console.permissions import actions
from apps.core.models import AuditEvent
from apps.core.services import SYSTEM
from apps.jobs.models import Job
from apps.monitoring.models import Alert
from apps.recovery.models import DRPlan, RecoveryRun
from apps.storage.services import ensure_default_location
from tests.helpers import make_user
from tests.test_role_matrix import ACTIONS, CONSOLE

pytestmark = pytest.mark.django_db

# The role of each console action, from the one table of tests/test_role_matrix.py.
EXPECTED_ROLES = {f"console:{name}": ACTIONS[action] for name, action in CONSOLE.items()}


def as_role(role, name=None) -> Client:
    c = Client()
    c.force_login(make_user(name or f"{role}-user", role))
    return c


@pytest.fixture
def world(target, tmp_path, settings):
    """A backup of `sample`, a document source with one version, an open alert and a DR plan."""
    from tests.docs_helpers import add_source, backup as docs_backup, make_tree

    settings.DOCUMENTS_RESTORE_ROOT = tmp_path / "restores"
    settings.RECOVERY_ROOT = tmp_path / "recoveries"
    admin = as_role("admin", "ada")
    admin.post(f"/targets/{target.pk}/backup/", {"format": "custom"})
    tree = tmp_path / "tree"
    make_tree(tree, files=8)
    source = add_source("uploads", tree)
    version = docs_backup(source)
    assert version.status == "succeeded"
    alert = Alert.objects.create(type="backup_failed", severity="high", target="sample", fingerprint="t:1",
                                 message="sample: the last backup failed", database_target=target,
                                 first_seen=timezone.now(), last_seen=timezone.now())
    plan = DRPlan.objects.create(name="shop", primary=target)
    return {"target": target, "backup": Backup.objects.get(), "source": source, "version": version,
            "alert": alert, "plan": plan, "tree": tree, "admin": admin}


def urls_of(w) -> dict[str, str]:
    return {
        "console:backup-now": reverse("console:backup-now", args=[w["target"].pk]),
        "console:verify": reverse("console:verify", args=[w["backup"].pk]),
        "console:backup": reverse("console:backup", args=[w["backup"].pk]),
        "console:source-backup": reverse("console:source-backup", args=[w["source"].pk]),
        "console:version-verify": reverse("console:version-verify", args=[w["source"].pk, w["version"].pk]),
        "console:version-restore": reverse("console:version-restore", args=[w["source"].pk]),
        "console:pitr": reverse("console:pitr"),
        "console:retention": reverse("console:retention"),
        "console:alert-action": reverse("console:alert-action", args=[w["alert"].pk, "acknowledge"]),
        "console:dr-drill": reverse("console:dr-drill", args=[w["plan"].pk]),
        "console:dr-failover": reverse("console:dr-failover", args=[w["plan"].pk]),
        "console:dr-platform": reverse("console:dr-platform"),
        "console:approval-decide": reverse("console:approval-decide", args=[999999, "approve"]),
    }


def test_every_console_action_is_marked_with_its_role():
    assert {name: role for name, _, role in actions()} == EXPECTED_ROLES


def test_every_page_renders_for_a_viewer_and_links_the_admin(world):
    w, viewer = world, as_role("viewer", "vera")
    job = Job.objects.filter(type="backup.database").get()
    pages = ["/", f"/targets/{w['target'].pk}/", f"/documents/{w['source'].pk}/", f"/jobs/{job.pk}/",
             f"/backups/{w['backup'].pk}/", "/monitoring/", "/monitoring/alerts/", "/dr/",
             f"/dr/plans/{w['plan'].pk}/", "/retention/"]
    for url in pages:
        r = viewer.get(url)
        assert r.status_code == 200, url
        html = r.content.decode()
        assert 'href="/admin/"' in html and 'href="/audit/"' in html and 'href="/recovery/pitr/"' in html, url
        assert "cdn" not in html.lower(), url
    home = viewer.get("/").content.decode()
    assert 'id="source-uploads"' in home and "light-green" in home  # both backed up just now: within the RPO
    assert 'id="dashboard-chart-data"' in home and 'id="durations-chart"' in home and 'id="dr-plans"' in home
    # The 30-day lines are not in the page: its script fetches them (the viewer may read them too).
    assert '"series"' not in home and 'data-url="/dashboard/charts.json"' in home
    lines = {(s["kind"], s["name"]): s for s in viewer.get("/dashboard/charts.json").json()["series"]}
    assert lines[("database", "sample")]["sizes"] and lines[("database", "sample")]["durations"]
    assert lines[("documents", "uploads")]["sizes"][-1]["y"] > 0
    # The sources table's figures (one query: the newest version by subquery) are the version's own.
    from apps.documents import selectors as doc_selectors

    v = w["version"]
    v.refresh_from_db()
    assert doc_selectors.source_rows() == [{"source": "uploads", "versions": 1, "last_success_at": v.finished_at,
                                            "files": v.files, "bytes_total": v.bytes_total}] and v.files > 0
    assert f"<td>1</td><td>{v.files}</td>" in home
    assert viewer.get("/audit/").status_code == 403  # admin only, as GET /v1/audit/
    assert w["admin"].get("/audit/").status_code == 200


@pytest.mark.parametrize("role, refused", [
    ("viewer", set(EXPECTED_ROLES)),
    ("operator", {n for n, r in EXPECTED_ROLES.items() if r == "admin"}),
    (None, set(EXPECTED_ROLES)),
])
def test_lower_roles_are_refused_every_action_with_a_403(world, role, refused):
    client = as_role(role, f"who-{role}")
    before = (Job.objects.count(), AuditEvent.objects.count())
    for name, url in urls_of(world).items():
        if name not in refused:
            continue
        r = client.post(url, {"confirm": "shop", "format": "custom", "note": "x", "directory": "d",
                              "version": world["version"].pk, "dbname": "x", "target": "sample"})
        assert r.status_code == 403, (name, r.status_code)
        assert b"needs the" in r.content, name
    assert (Job.objects.count(), AuditEvent.objects.count()) == before
    world["alert"].refresh_from_db()
    assert world["alert"].status == "open"


def test_admin_only_forms_are_refused_to_operators_even_to_look_at(world):
    operator = as_role("operator", "otto")
    for url in ("/recovery/pitr/", f"/dr/plans/{world['plan'].pk}/failover/", "/dr/platform/"):
        assert operator.get(url).status_code == 403, url
    assert b"pitr-destination-form" in world["admin"].get("/recovery/pitr/?target=sample").content


def test_target_page_backs_up_full_and_incremental_with_a_method(world):
    w, operator = world, as_role("operator", "otto")
    page = operator.get(f"/targets/{w['target'].pk}/").content.decode()
    assert w["backup"].pk in page and 'id="backup-now-form"' in page and 'id="no-window"' in page
    back = f"/targets/{w['target'].pk}/"
    r = operator.post(f"/targets/{w['target'].pk}/backup/", {"kind": "incremental", "next": back}, follow=True)
    assert b"data directory" in r.content and r.redirect_chain[-1][0] == back
    r = operator.post(f"/targets/{w['target'].pk}/backup/", {"kind": "sideways", "next": back}, follow=True)
    assert b"Unknown backup kind" in r.content and not Job.objects.filter(status="failed").exists()
    r = operator.post(f"/targets/{w['target'].pk}/backup/", {"kind": "full", "method": "logical", "next": back})
    assert r.status_code == 302 and r["Location"].startswith("/jobs/")
    newest = Backup.objects.order_by("-created_at").first()
    assert newest.status == BackupStatus.SUCCEEDED and newest.format == "custom"
    event = AuditEvent.objects.filter(action="backup.requested", actor_name="otto").get()
    assert event.via == "console" and event.details["kind"] == "full"
    # An open redirect is not followed: a foreign `next` goes to the dashboard.
    r = operator.post(f"/targets/{w['target'].pk}/backup/", {"kind": "incremental", "next": "//evil.example/"})
    assert r["Location"] == "/"


def test_document_source_page_backs_up_verifies_and_restores(world, settings):
    from tests.docs_helpers import snapshot

    w = world
    operator, admin = as_role("operator", "otto"), w["admin"]
    r = operator.post(f"/documents/{w['source'].pk}/backup/")
    assert r.status_code == 302 and r["Location"].startswith("/jobs/")
    assert w["source"].versions.filter(status="succeeded").count() == 2
    r = operator.post(f"/documents/{w['source'].pk}/versions/{w['version'].pk}/verify/")
    assert Job.objects.get(type="documents.verify").status == "succeeded"
    page = admin.get(f"/documents/{w['source'].pk}/").content.decode()
    assert w["version"].pk in page and 'id="docs-restore-form"' in page
    assert 'id="docs-restore-form"' not in operator.get(f"/documents/{w['source'].pk}/").content.decode()
    bad = admin.post(f"/documents/{w['source'].pk}/restore/", {"version": w["version"].pk, "directory": "../etc"})
    assert bad.status_code == 400 and b"not an acceptable directory name" in bad.content
    r = admin.post(f"/documents/{w['source'].pk}/restore/", {"version": w["version"].pk, "directory": "back"})
    assert r.status_code == 302 and r["Location"].startswith("/jobs/")
    assert Job.objects.get(type="documents.restore").status == "succeeded"
    assert snapshot(settings.DOCUMENTS_RESTORE_ROOT / "back") == snapshot(w["tree"])
    assert AuditEvent.objects.filter(action="documents.restore.requested", actor_name="ada").exists()


def test_job_progress_json_has_bytes_rate_and_eta(world):
    job = Job.objects.get(type="backup.database")
    body = as_role("viewer").get(f"/jobs/{job.pk}/progress.json").json()
    assert body["status"] == "succeeded" and body["finished"] and body["percent"] == 100.0
    assert body["done"] > 0 and body["rate"] > 0 and body["eta_seconds"] is None
    assert "artifact committed" in body["log"]
    page = as_role("viewer", "v2").get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="job-bar"' in page and f'data-progress-url="/jobs/{job.pk}/progress.json"' in page
    assert 'http-equiv="refresh"' not in page  # the page polls instead of reloading


def _window(target, *, start, end):
    """A base backup finished at `start` and three archived 1 MB segments whose last commit is at `end`."""
    from apps.backups import wal_names

    location = ensure_default_location()
    Backup.objects.create(database_target=target, storage_location=location, kind="full", format="basebackup",
                          status="succeeded", lsn_start="0/100028", lsn_stop="0/100100", timeline=1,
                          started_at=start - timedelta(seconds=5), finished_at=start)
    for segno, commit in ((1, start), (2, start + (end - start) / 2), (3, end)):
        WalSegment.objects.create(database_target=target, storage_location=location,
                                  name=wal_names.segment_name(1, segno, 1 << 20), timeline=1,
                                  start_lsn=wal_names.format_lsn(segno << 20), key="k", size_raw=1 << 20,
                                  size_stored=1, sha256_raw="x", sha256_stored="x", compression="zstd",
                                  cipher="none", last_commit_at=commit)


def test_pitr_wizard_refuses_a_moment_outside_the_window_and_reviews_one_inside(world):
    w, admin = world, world["admin"]
    end = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(hours=1)
    _window(w["target"], start=start, end=end)
    page = admin.get("/recovery/pitr/?target=sample").content.decode()
    assert 'id="window-text"' in page and start.strftime("%Y-%m-%d %H:%M:%S") in page and "tl-span" in page
    form = {"target": "sample", "mode": "cluster", "directory": "before_loss", "table_action": "rename",
            "step": "review"}
    too_early = (start - timedelta(days=1)).isoformat()
    r = admin.post("/recovery/pitr/", {**form, "at": too_early})
    assert r.status_code == 400
    html = r.content.decode()
    assert "outside the recoverable window of sample" in html
    assert start.isoformat(sep=" ", timespec="seconds") in html and end.isoformat(sep=" ", timespec="seconds") in html
    for bad, words in (({"at": "yesterday"}, "not a time"), ({"at": "2026-11-25 12:00:00"}, "UTC offset"),
                       ({"directory": "../x"}, "not an acceptable directory name"),
                       ({"directory": ""}, "Name the new cluster"),
                       ({"mode": "table", "table": ""}, "Give the table"),
                       ({"mode": "table", "table": "public.leases", "rename": ""}, "Give the new table"),
                       ({"mode": "table", "table": "public.leases; drop", "rename": "x"}, "not an acceptable")):
        r = admin.post("/recovery/pitr/", {**form, "at": (start + timedelta(minutes=30)).isoformat(), **bad})
        assert r.status_code == 400 and words in r.content.decode(), (bad, r.content.decode()[-2000:])
    inside = (start + timedelta(minutes=30)).isoformat()
    r = admin.post("/recovery/pitr/", {**form, "at": inside})
    assert r.status_code == 200 and b'id="pitr-confirm"' in r.content
    assert w["backup"].pk not in r.content.decode()  # the logical backup is no base for PITR
    assert not RecoveryRun.objects.exists() and not Job.objects.filter(type="recovery.pitr").exists()
    # Confirmed: the API's request service (apps.recovery.pitr.request_pitr) runs its last check, the environment
    # file PostgreSQL's restore_command needs (none in this test process), and its refusal is the page's message.
    # The real recovery from the wizard: tests/test_console_pitr_journeys.py.
    r = admin.post("/recovery/pitr/", {**form, "at": inside, "step": "confirm"}, follow=True)
    assert r.redirect_chain == [("/recovery/pitr/?target=sample", 302)]
    assert "Name the environment file PostgreSQL" in r.content.decode()
    assert not RecoveryRun.objects.exists()


def test_alerts_filter_and_need_a_note(world):
    w, operator = world, as_role("operator", "otto")
    Alert.objects.create(type="storage_full", severity="critical", target="primary", fingerprint="t:2",
                         message="primary storage is full", first_seen=timezone.now(), last_seen=timezone.now())
    page = operator.get("/monitoring/alerts/?type=storage_full").content.decode()
    assert "primary storage is full" in page and "the last backup failed" not in page
    assert "the last backup failed" in operator.get("/monitoring/alerts/?severity=high&target=sample").content.decode()
    assert "the last backup failed" not in operator.get("/monitoring/alerts/?severity=critical").content.decode()
    r = operator.post(f"/monitoring/alerts/{w['alert'].pk}/resolve/", {"note": "  "})
    assert r.status_code == 400 and b"Say why in a note" in r.content
    w["alert"].refresh_from_db()
    assert w["alert"].status == "open"
    operator.post(f"/monitoring/alerts/{w['alert'].pk}/resolve/", {"note": "re-ran the backup"})
    w["alert"].refresh_from_db()
    assert (w["alert"].status, w["alert"].resolved_note) == ("resolved", "re-ran the backup")


def test_audit_page_filters_by_user_action_object_and_time(world):
    w, admin = world, world["admin"]
    as_role("operator", "otto").post(f"/backups/{w['backup'].pk}/verify/", {"level": "checksum"})
    page = admin.get("/audit/?actor=otto").content.decode()
    assert "backup.verify.requested" in page and "backup.requested" not in page
    page = admin.get("/audit/?action=backup.&actor=ada").content.decode()
    assert "backup.requested" in page and "verify" not in page
    page = admin.get(f"/audit/?object_id={w['backup'].pk}").content.decode()
    assert "backup.requested" in page
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert "No events match" in admin.get("/audit/", {"since": future}).content.decode()
    bad = admin.get("/audit/?since=last+tuesday")
    assert bad.status_code == 400 and b"audit-errors" in bad.content


def test_failover_needs_the_plan_name_typed(world):
    w, admin = world, world["admin"]
    r = admin.post(f"/dr/plans/{w['plan'].pk}/failover/", {"confirm": "SHOP"})
    assert r.status_code == 400 and b"That is not shop" in r.content
    assert not Job.objects.filter(type="recovery.failover").exists()
    page = as_role("viewer", "vv").get(f"/dr/plans/{w['plan'].pk}/").content.decode()
    assert 'id="drills"' in page and 'id="plan-health"' in page and "failover-link" not in page


def test_timeline_lays_out_spans_and_the_holes_between_them():
    from apps.console.selectors import describe_window, timeline, within_window

    t0 = timezone.now().replace(microsecond=0)
    window = {"spans": [{"earliest_at": t0, "latest_at": t0 + timedelta(hours=1), "base_backup_id": "A"},
                        {"earliest_at": t0 + timedelta(hours=3), "latest_at": t0 + timedelta(hours=4),
                         "base_backup_id": "B"}],
              "gaps": [{"timeline": 1, "first_missing": "x", "last_missing": "y", "missing": 2}]}
    laid = timeline(window)
    assert [(s["left"], s["width"]) for s in laid["spans"]] == [(0.0, 25.0), (75.0, 25.0)]
    (hole,) = laid["holes"]
    assert (hole["left"], hole["width"]) == (25.0, 50.0) and laid["gaps"] == window["gaps"]
    assert within_window(window, t0 + timedelta(minutes=30))
    assert not within_window(window, t0 + timedelta(hours=2))  # in the hole
    assert describe_window(window).count(" to ") == 2
    assert timeline({"spans": []})["spans"] == [] and "no recoverable window" in describe_window({"spans": []})


def test_the_favicon_is_the_consoles_icon_not_a_404():
    """Every page (the admin's too) makes the browser ask for /favicon.ico; a 404 there is an error in its log."""
    from django.conf import settings

    r = Client().get("/favicon.ico")
    assert r.status_code == 301 and r["Location"] == "/static/console/favicon.svg"
    assert (settings.BASE_DIR / "static" / "console" / "favicon.svg").read_text().startswith("<svg")


def _rows_html_by_format_html(request, rows, *, can_operate):
    """The dashboard's target rows as format_html and the floatformat filter wrote them (the view before it
    formatted them itself): the reference the view's markup must equal."""
    from django.template.backends.utils import csrf_input
    from django.template.defaultfilters import floatformat
    from django.utils.html import format_html, format_html_join

    from apps.backups.services import LOGICAL_FORMATS
    from apps.console.views import _BACKUP_NOW, _TARGET_ROW

    token = csrf_input(request)
    options = format_html_join("", '<option value="{}">{}</option>', ((f, f) for f in LOGICAL_FORMATS))

    def seconds(value):
        return "—" if value is None else f"{floatformat(value, 0)} s"

    out = []
    for row in rows:
        last = row["last_success_at"]
        out.append(format_html(
            _TARGET_ROW, name=row["target"], light=row["light"],
            url=reverse("console:target", args=[row["target_id"]]), where=row["where"],
            last=timezone.localtime(last).strftime("%Y-%m-%d %H:%M:%S") if last else "never",
            rpo=round(row["rpo_seconds"] / 3600), status=str(row["status"]), status_text=row["status"] or "—",
            replication=seconds(row["replication_lag_seconds"]), wal=seconds(row["wal_archive_lag_seconds"]),
            ready_class="status-succeeded" if row["dr_ready"] else "status-failed",
            ready="yes" if row["dr_ready"] else "no",
            form=format_html(_BACKUP_NOW, reverse("console:backup-now", args=[row["target_id"]]), token, options)
            if can_operate else ""))
    return out


@pytest.mark.parametrize("can_operate", [True, False])
def test_dashboard_target_rows_are_the_markup_format_html_and_floatformat_wrote(rf, can_operate):
    """The rows the view formats itself (str.format, html.escape, its own whole-seconds rounding) are byte for
    byte what format_html and `floatformat:0` gave, for names and hosts that need escaping, no status, no lag
    and lags on the half (rounded half up like the filter)."""
    from apps.console.views import _target_rows_html, _whole_seconds

    request = rf.get("/")
    request.user = make_user("rows-operator", "operator")
    now = timezone.now()
    lags = [None, 0, 0.4, 0.5, 1.5, 2.5, 2.4999, 59.5, 99.99, 1234567.5, 3.0, 1e-7, 86400.123]
    rows = [{"target": name, "target_id": 7 + i, "light": ["green", "amber", "red"][i % 3],
             "where": f"u<{i}>@h&\"x':5432/db", "last_success_at": None if i % 4 == 0 else now - timedelta(hours=i),
             "rpo_seconds": 3600 * (1 + i), "status": None if i % 5 == 0 else ["succeeded", "failed"][i % 2],
             "replication_lag_seconds": lags[i % len(lags)], "wal_archive_lag_seconds": lags[-1 - i % len(lags)],
             "dr_ready": i % 2 == 0}
            for i, name in enumerate(["plain", "<script>alert(1)</script>", "a&b", 'q"uote', "é-ü"] * 3)]
    _target_rows_html(request, rows, can_operate=can_operate)
    # The csrf input is masked differently per call: compare with its value taken out.
    import re

    def unmasked(html):
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", str(html))

    want = _rows_html_by_format_html(request, rows, can_operate=can_operate)
    assert [unmasked(r["html"]) for r in rows] == [unmasked(h) for h in want]
    assert "&lt;script&gt;" in rows[1]["html"] and "<script>" not in rows[1]["html"]
    from django.template.defaultfilters import floatformat

    for value in lags[1:] + [-0.4, -2.5, 0.49999999, 7e15, 12.0]:
        assert _whole_seconds(value) == f"{floatformat(value, 0)} s", value
    assert _whole_seconds(None) == "—"


_JOB_LOOP = """  {% for j in jobs %}
  <tr>
    <td><a href="{% url 'console:job' j.pk %}">{{ j.pk }}</a></td>
    <td>{{ j.type }}</td>
    <td class="status-{{ j.status }}">{{ j.status }}</td>
    <td>{{ j.progress_done|filesizeformat }}</td>
    <td>{{ j.requested_by|default:j.via }}</td>
    <td>{{ j.created_at|date:"Y-m-d H:i:s" }}</td>
  </tr>
  {% endfor %}"""
_BACKUP_LOOP = """  {% for b in backups %}
  <tr>
    <td><a href="{% url 'console:backup' b.pk %}">{{ b.pk }}</a></td>
    <td>{{ b.database_target }}</td>
    <td>{{ b.format }}</td>
    <td class="status-{{ b.status }}">{{ b.status }}</td>
    <td>{{ b.size_stored|default_if_none:""|filesizeformat }}</td>
    <td>{{ b.finished_at|date:"Y-m-d H:i:s" }}</td>
    <td class="last-verified">{% if b.last_verified_at %}<span class="status-{% if b.last_verification_result == 'passed' %}succeeded{% else %}failed{% endif %}">{{ b.last_verified_at|date:"Y-m-d H:i" }} ({{ b.last_verified_level }})</span>{% else %}never{% endif %}</td>
  </tr>
  {% endfor %}"""


def test_dashboard_job_and_backup_rows_are_what_the_template_loops_wrote(world):
    """The recent jobs and backups rows the view writes are byte for byte the template loops they replaced:
    a job with and without a requesting user, backups verified (passed, failed) or not, without a size, a
    finish time or a target, and values that need escaping."""
    from django.template import engines

    from apps.console.views import _short_lists_html
    from apps.jobs.models import JobStatus

    user = make_user("lists-<op>", "operator")
    now = timezone.now()
    Job.objects.create(type="backup.database", status=JobStatus.RUNNING, progress_done=123456789,
                       requested_by=user, via="console")
    Job.objects.create(type="x<&>", status=JobStatus.FAILED, progress_done=0, via="api")
    location = world["backup"].storage_location
    made = [Backup.objects.create(database_target=world["target"], storage_location=location,
                                  status=BackupStatus.SUCCEEDED, finished_at=now - timedelta(hours=n),
                                  size_stored=None if n == 1 else 1536 * n, format="custom",
                                  last_verified_at=now - timedelta(minutes=n) if n % 3 else None,
                                  last_verified_level="restore" if n % 2 else "checksum",
                                  last_verification_result="passed" if n == 1 else "failed")
            for n in range(1, 5)]
    Backup.objects.create(database_target=None, storage_location=location, status=BackupStatus.RUNNING)
    jobs = list(Job.objects.select_related("requested_by")[:15])
    backups = list(Backup.objects.select_related("database_target")[:20])
    assert len(jobs) >= 2 and len(backups) >= 6 and made
    job_rows, backup_rows = _short_lists_html(jobs, backups)
    engine = engines["django"]
    assert job_rows == engine.from_string(_JOB_LOOP).render({"jobs": jobs})[2:]
    assert backup_rows == engine.from_string(_BACKUP_LOOP).render({"backups": backups})[2:]
    assert "lists-&lt;op&gt;" in job_rows and "x&lt;&amp;&gt;" in job_rows and "status-failed" in backup_rows
    assert "status-succeeded" in backup_rows and ">never<" in backup_rows and "<td>None</td>" in backup_rows


def test_header_approvals_check_is_what_has_perm_decides_for_every_kind_of_user():
    """The header's Approvals link asks one written EXISTS (ModelBackend's rules) instead of loading every
    permission through `perms`: the same answer as user.has_perm for each way of holding the permission (role
    groups, a group of one's own, a direct grant, superuser) or not holding it (inactive, no group), and the
    link is shown exactly then."""
    from django.contrib.auth.models import Group, Permission, User

    from apps.console.templatetags.console_nav import has_model_perm

    perm = "approvals.change_approvalrequest"
    change = Permission.objects.get(content_type__app_label="approvals", codename="change_approvalrequest")
    users = {role: make_user(f"nav-{role}", role) for role in ("viewer", "operator", "admin")}
    users["nobody"] = make_user("nav-nobody", None)
    users["direct"] = make_user("nav-direct", "viewer")
    users["direct"].user_permissions.add(change)
    users["own-group"] = make_user("nav-own-group", None)
    own = Group.objects.create(name="nav-approvers")
    own.permissions.add(change)
    users["own-group"].groups.add(own)
    users["superuser"] = User.objects.create_superuser("nav-super", password="nav-super-pw-1234")
    users["inactive-admin"] = make_user("nav-inactive-admin", "admin")
    users["inactive-super"] = User.objects.create_superuser("nav-inactive-super", password="nav-super-pw-1234")
    for name in ("inactive-admin", "inactive-super"):
        users[name].is_active = False
        users[name].save()
    decided = {}
    for name, user in users.items():
        fresh = User.objects.get(pk=user.pk)  # no permission cache from an earlier call
        decided[name] = has_model_perm(fresh, perm)
        assert decided[name] == User.objects.get(pk=user.pk).has_perm(perm), name
    assert decided == {"viewer": False, "operator": False, "admin": True, "nobody": False, "direct": True,
                       "own-group": True, "superuser": True, "inactive-admin": False, "inactive-super": False}
    for name in ("viewer", "admin", "direct"):
        client = Client()
        client.force_login(users[name])
        page = client.get("/").content.decode()
        assert ('href="/approvals/">Approvals</a>' in page) == decided[name], name
