"""Monitoring through its interfaces: the alerts API (filters, acknowledge, resolve with who/when/note), admin
list actions, channels with write-only secrets and a test send, alert rules, the dashboard, /healthz, /readyz,
/metrics (parsed with Prometheus's own text parser), and setup_schedules run twice."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.backups.models import Backup, BackupStatus
from apps.core.models import AuditEvent
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.monitoring import engine, outbox
from apps.monitoring.models import Alert, NotificationChannel
from apps.storage.services import ensure_default_location
from tests.helpers import make_user
from tests.receivers import HttpReceiver, free_port

ALERTS = "/v1/backup-recovery/monitoring/alerts"


@pytest.fixture
def target(db):
    return save_target(target=DatabaseTarget(name="orders", host="127.0.0.1", port=free_port(), dbname="orders",
                                             user="app"), actor=SYSTEM)


def record(target, status, *, hours_ago=0.0, size=1000):
    at = timezone.now() - timedelta(hours=hours_ago)
    return Backup.objects.create(database_target=target, status=status, storage_location=ensure_default_location(),
                                 started_at=at, finished_at=at, size_raw=size, size_stored=size,
                                 error="boom" if status == BackupStatus.FAILED else "")


@pytest.fixture
def alert(target):
    record(target, BackupStatus.FAILED)
    engine.evaluate()
    return Alert.objects.get(type="backup_failed")


def test_alert_list_has_the_issue_fields_and_filters(api_as, alert):
    viewer = api_as("viewer")
    rows = viewer.get(ALERTS).json()["results"]
    assert len(rows) == 1
    row = rows[0]
    for field in ("id", "type", "severity", "status", "target", "count", "first_seen", "last_seen"):
        assert field in row
    assert (row["type"], row["severity"], row["status"], row["target"], row["count"]) == (
        "backup_failed", "critical", "open", "orders", 1)
    assert viewer.get(ALERTS, {"status": "open", "severity": "critical", "target": "orders",
                               "type": "backup_failed"}).json()["count"] == 1
    assert viewer.get(ALERTS, {"status": "resolved"}).json()["count"] == 0
    assert viewer.get(ALERTS, {"target": "elsewhere"}).json()["count"] == 0
    assert viewer.get(ALERTS, {"severity": "apocalyptic"}).status_code == 400
    assert viewer.get(f"{ALERTS}/{alert.pk}").json()["id"] == alert.pk


def test_acknowledge_and_resolve_via_api_record_who_when_and_note(api_as, alert):
    assert api_as("viewer").post(f"{ALERTS}/{alert.pk}/acknowledge", {"note": "x"}, format="json").status_code == 403
    operator = api_as("operator", "olga")
    r = operator.post(f"{ALERTS}/{alert.pk}/acknowledge", {"note": "looking at it"}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == "olga"
    assert body["acknowledged_note"] == "looking at it" and body["acknowledged_at"]
    assert operator.post(f"{ALERTS}/{alert.pk}/acknowledge", {}, format="json").status_code == 409

    r = operator.post(f"{ALERTS}/{alert.pk}/resolve", {"note": "disk replaced"}, format="json")
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["resolved_by"], r.json()["resolved_note"]) == ("resolved", "olga",
                                                                                       "disk replaced")
    alert.refresh_from_db()
    assert alert.resolved_by.username == "olga" and not alert.auto_resolved
    assert operator.post(f"{ALERTS}/{alert.pk}/resolve", {}, format="json").status_code == 409
    assert AuditEvent.objects.filter(action="alert.resolve", actor_name="olga", object_id=alert.pk).exists()
    assert operator.post(f"{ALERTS}/01ARZ3NDEKTSV4RRFFQ69G5FAV/resolve", {}, format="json").status_code == 404
    assert operator.post(f"{ALERTS}/{alert.pk}/resolve", {"note": ["a"]}, format="json").status_code == 400


def test_pagerduty_hears_acknowledge_with_the_same_dedup_key(api_as, target):
    from apps.monitoring import services

    pd = HttpReceiver(status=202).start()
    try:
        services.save_channel(channel=NotificationChannel(name="pd", kind="pagerduty", config={"events_url": pd.url}),
                              actor=SYSTEM, secrets={"routing_key": "K"})
        record(target, BackupStatus.FAILED)
        engine.evaluate()
        alert = Alert.objects.get()
        api_as("operator").post(f"{ALERTS}/{alert.pk}/acknowledge", {"note": "mine"}, format="json")
        outbox.deliver_due()
    finally:
        pd.stop()
    actions = [(r.json["event_action"], r.json["dedup_key"]) for r in pd.requests]
    assert actions == [("trigger", alert.dedup_key), ("acknowledge", alert.dedup_key)]


def test_admin_list_actions_record_the_user(client, alert, target):
    user = make_user("alice", "operator")
    User.objects.filter(pk=user.pk).update(is_staff=True)
    client.force_login(User.objects.get(pk=user.pk))
    url = "/admin/monitoring/alert/"
    assert client.get(url).status_code == 200
    r = client.post(url, {"action": "acknowledge", "_selected_action": [alert.pk]})
    assert r.status_code == 302
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by.username == "alice"
    client.post(url, {"action": "resolve", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolved_by.username == "alice"
    assert AuditEvent.objects.filter(action="alert.acknowledge", actor_name="alice", via="admin").exists()

    # A viewer may look, not act.
    record(target, BackupStatus.FAILED)
    engine.evaluate()
    reopened = Alert.objects.get()
    assert reopened.status == "open"
    viewer = make_user("victor", "viewer")
    User.objects.filter(pk=viewer.pk).update(is_staff=True)
    client.force_login(User.objects.get(pk=viewer.pk))
    client.post(url, {"action": "acknowledge", "_selected_action": [reopened.pk]})
    reopened.refresh_from_db()
    assert reopened.status == "open"


def test_channel_secrets_are_write_only_and_test_send_works(api_as):
    slack = HttpReceiver().start()
    admin = api_as("admin")
    try:
        r = admin.post("/v1/backup-recovery/monitoring/channels/", {
            "name": "ops", "kind": "slack", "min_severity": "warning",
            "secrets": {"webhook_url": slack.url}}, format="json")
        assert r.status_code == 201, r.content
        assert "T0KEN" not in r.content.decode() and r.json()["secrets_set"] == ["webhook_url"]
        channel = NotificationChannel.objects.get(name="ops")
        assert "T0KEN" not in channel.secrets_sealed and channel.get_secrets()["webhook_url"] == slack.url
        listed = admin.get("/v1/backup-recovery/monitoring/channels/").content.decode()
        assert "T0KEN" not in listed

        # A change without secrets keeps them.
        assert admin.patch(f"/v1/backup-recovery/monitoring/channels/{channel.pk}/", {"enabled": True},
                           format="json").status_code == 200
        r = admin.post(f"/v1/backup-recovery/monitoring/channels/{channel.pk}/test/")
        assert r.status_code == 200 and r.json()["status"] == "sent" and r.json()["response_code"] == 200
        assert "Test notification" in slack.requests[0].json["attachments"][0]["text"]
    finally:
        slack.stop()
    assert "T0KEN" not in str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert api_as("operator").post(f"/v1/backup-recovery/monitoring/channels/{channel.pk}/test/").status_code == 403
    bad = admin.post("/v1/backup-recovery/monitoring/channels/", {"name": "x", "kind": "slack"}, format="json")
    assert bad.status_code == 400 and "webhook_url" in bad.content.decode()
    bad = admin.post("/v1/backup-recovery/monitoring/channels/", {
        "name": "y", "kind": "webhook", "secrets": {"url": "file:///etc/passwd", "hmac_key": "k"}}, format="json")
    assert bad.status_code == 400
    bad = admin.post("/v1/backup-recovery/monitoring/channels/", {"name": "z", "kind": "carrier-pigeon"},
                     format="json")
    assert bad.status_code == 400


def test_alert_rules_crud(api_as, target):
    admin = api_as("admin")
    url = "/v1/backup-recovery/monitoring/rules/"
    r = admin.post(url, {"type": "backup_age", "target": "orders", "params": {"rpo_hours": 12}}, format="json")
    assert r.status_code == 201, r.content
    clash = admin.post(url, {"type": "backup_age", "target": "orders"}, format="json")
    assert clash.status_code == 400 and "exists already" in clash.content.decode()
    assert admin.post(url, {"type": "backup_age", "params": {"rpo": 1}}, format="json").status_code == 400
    assert admin.post(url, {"type": "nope"}, format="json").status_code == 400
    assert admin.post(url, {"type": "backup_age", "target": "ghost"}, format="json").status_code == 400
    assert api_as("operator").post(url, {"type": "backup_age"}, format="json").status_code == 403
    rule_id = r.json()["id"]
    assert admin.patch(f"{url}{rule_id}/", {"params": {"rpo_hours": 6}}, format="json").json()["params"] == {
        "rpo_hours": 6}
    assert admin.delete(f"{url}{rule_id}/").status_code == 204


def test_dashboard(api_as, target):
    record(target, BackupStatus.SUCCEEDED, hours_ago=30, size=1000)
    record(target, BackupStatus.FAILED, hours_ago=1)
    engine.evaluate()
    data = api_as("viewer").get("/v1/backup-recovery/monitoring/dashboard").json()
    [row] = data["targets"]
    assert row["target"] == "orders" and row["status"] == "failed"
    assert row["within_rpo"] is False and row["dr_ready"] is False and row["rpo_seconds"] == 26 * 3600
    assert row["success_rate_7d"] == 0.5 and len(row["sizes"]) == 1
    assert data["open_alerts_by_severity"]["critical"] == 1 and data["open_alerts_by_severity"]["high"] == 1
    assert data["storage"][0]["location"] == ensure_default_location().name


def test_healthz_and_readyz(client, db, settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200  # tests run tasks inline
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["database"]["ok"] and not r.json()["checks"]["worker"]["ok"]
    from django_q.models import Task

    now = timezone.now()
    Task.objects.create(id="a" * 32, name="reap", func="apps.jobs.tasks.reap_dead_jobs", started=now, stopped=now,
                        success=True)
    assert client.get("/readyz").status_code == 200


def test_metrics_parse_with_the_prometheus_parser(client, target, settings):
    record(target, BackupStatus.SUCCEEDED, hours_ago=2)
    record(target, BackupStatus.FAILED)
    engine.evaluate()
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    r = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.content.decode())}
    by_status = {s.labels["status"]: s.value for s in families["backupsite_backups"].samples}
    assert by_status["succeeded"] == 1 and by_status["failed"] == 1
    [last] = families["backupsite_last_success_timestamp_seconds"].samples
    assert last.labels == {"target": "orders"}
    assert abs(last.value - (timezone.now() - timedelta(hours=2)).timestamp()) < 60
    alerts = {s.labels["severity"]: s.value for s in families["backupsite_open_alerts"].samples}
    assert alerts["critical"] == 1
    assert "backupsite_location_stored_bytes" in families
    assert "backupsite_location_stored_bytes" in families


def test_metrics_for_a_signed_in_viewer(client, db):
    user = make_user("val", "viewer")
    client.force_login(user)
    assert client.get("/metrics").status_code == 200


def test_setup_schedules_twice_creates_each_once(db):
    from django_q.models import Schedule

    call_command("setup_schedules")
    call_command("setup_schedules")
    names = list(Schedule.objects.values_list("name", flat=True))
    assert len(names) == len(set(names))
    health = Schedule.objects.get(func="apps.monitoring.tasks.health_check")
    assert health.schedule_type == Schedule.MINUTES and health.minutes == 5
    assert Schedule.objects.get(func="apps.monitoring.tasks.replication_check").schedule_type == Schedule.CRON
    assert Schedule.objects.get(func="apps.monitoring.tasks.deliver_outbox").minutes == 1


def test_scheduled_tasks_run(db, target):
    from apps.monitoring import tasks

    record(target, BackupStatus.FAILED)
    report = tasks.health_check()
    assert report["alerts"]["opened"] >= 1 and not report["targets"]["orders"]["ok"]
    assert "opened" not in tasks.replication_check()
    assert tasks.deliver_outbox() == {"sent": 0, "retry": 0, "failed": 0}


def test_admin_channel_form_keeps_secrets_write_only_and_test_sends(admin_client, db):
    hook = HttpReceiver().start()
    try:
        for url in ("/admin/monitoring/notificationchannel/add/", "/admin/monitoring/alertrule/add/",
                    "/admin/monitoring/delivery/", "/admin/monitoring/healthcheck/", "/admin/monitoring/alert/"):
            assert admin_client.get(url).status_code == 200, url
        r = admin_client.post("/admin/monitoring/notificationchannel/add/", {
            "name": "hook", "kind": "webhook", "enabled": "on", "min_severity": "high", "config": "{}",
            "secrets": f'{{"url": "{hook.url}", "hmac_key": "k3y"}}'})
        assert r.status_code == 302, r.content.decode()[:2000]
        channel = NotificationChannel.objects.get(name="hook")
        assert channel.get_secrets() == {"url": hook.url, "hmac_key": "k3y"}
        page = admin_client.get(f"/admin/monitoring/notificationchannel/{channel.pk}/change/").content.decode()
        assert "T0KEN" not in page and "k3y" not in page
        # Saving again without secrets keeps them.
        admin_client.post(f"/admin/monitoring/notificationchannel/{channel.pk}/change/", {
            "name": "hook", "kind": "webhook", "enabled": "on", "min_severity": "critical", "config": "{}",
            "secrets": ""})
        channel.refresh_from_db()
        assert channel.min_severity == "critical" and channel.get_secrets()["hmac_key"] == "k3y"
        admin_client.post("/admin/monitoring/notificationchannel/", {"action": "send_test",
                                                                     "_selected_action": [channel.pk]})
        assert hook.requests[0].json["event"] == "test"
        bad = admin_client.post("/admin/monitoring/notificationchannel/add/", {
            "name": "nokey", "kind": "webhook", "min_severity": "high", "config": "{}", "secrets": "{}"})
        assert bad.status_code == 200 and "needs" in bad.content.decode()
    finally:
        hook.stop()


def test_alert_list_query_count_does_not_grow_with_alerts(api_as, target):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    viewer = api_as("viewer")
    operator = make_user("oscar", "operator")

    def make(n):
        now = timezone.now()
        for i in range(n):
            Alert.objects.create(type="backup_age", severity="high", fingerprint=f"fp-{n}-{i}", target="orders",
                                 message="m", first_seen=now, last_seen=now, status="acknowledged",
                                 acknowledged_by=operator)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert viewer.get(ALERTS).status_code == 200
        return len(ctx.captured_queries)

    make(1)
    few = count()
    make(20)
    assert count() == few


def test_dashboard_query_count_does_not_grow_with_targets(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.monitoring import selectors

    def add(n):
        for i in range(n):
            t = DatabaseTarget.objects.create(name=f"t{DatabaseTarget.objects.count()}", host="h", port=1,
                                              dbname="d", user="u")
            record(t, BackupStatus.SUCCEEDED, hours_ago=3)
            record(t, BackupStatus.FAILED, hours_ago=1)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            data = selectors.dashboard()
        return len(ctx.captured_queries), data

    add(1)
    few, _ = count()
    add(10)
    many, data = count()
    assert many == few and len(data["targets"]) == 11
    assert all(row["status"] == "failed" and row["within_rpo"] for row in data["targets"])
