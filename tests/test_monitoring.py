"""Monitoring end to end: real backups failing and succeeding, real SMTP (aiosmtpd) and real local HTTP receivers
for Slack, PagerDuty and a signed webhook; the outbox surviving a receiver that is down."""
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupStatus
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.monitoring import engine, outbox, services
from apps.monitoring.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from apps.monitoring.models import Alert, AlertStatus, Delivery, DeliveryStatus, NotificationChannel
from tests.receivers import HttpReceiver, SmtpReceiver, free_port

HMAC_KEY = "webhook-signing-key-0123456789"


@pytest.fixture
def receivers():
    made = {"slack": HttpReceiver().start(), "pagerduty": HttpReceiver(status=202).start(),
            "webhook": HttpReceiver().start(), "smtp": SmtpReceiver().start()}
    yield made
    for r in made.values():
        r.stop()


def add_channel(name: str, kind: str, *, config=None, secrets=None, min_severity="high") -> NotificationChannel:
    return services.save_channel(channel=NotificationChannel(name=name, kind=kind, config=config or {},
                                                             min_severity=min_severity),
                                 actor=SYSTEM, secrets=secrets or {})


@pytest.fixture
def channels(db, receivers):
    return {
        "email": add_channel("ops-mail", "email", config={"to": ["oncall@example.com"], "host": "127.0.0.1",
                                                          "port": receivers["smtp"].port,
                                                          "from": "backups@example.com"}),
        "slack": add_channel("ops-slack", "slack", secrets={"webhook_url": receivers["slack"].url}),
        "pagerduty": add_channel("pager", "pagerduty", config={"events_url": receivers["pagerduty"].url},
                                 secrets={"routing_key": "R0UTINGKEY"}),
        "webhook": add_channel("hook", "webhook", secrets={"url": receivers["webhook"].url, "hmac_key": HMAC_KEY}),
        # Routing: this one only hears critical alerts.
        "critical-only": add_channel("critical-hook", "webhook", min_severity="critical",
                                     secrets={"url": receivers["webhook"].url, "hmac_key": HMAC_KEY}),
    }


def http_events(receiver: HttpReceiver) -> list[dict]:
    return [r.json for r in receiver.requests]


@pytest.fixture
def broken_target(db, source_db):
    """The sample database's target, at a port where nothing listens: its backups fail."""
    t = DatabaseTarget(name="ledger", host=source_db.host, port=free_port(), dbname=source_db.dbname,
                       user=source_db.user, sslmode="disable")
    return save_target(target=t, actor=SYSTEM, password="not-needed-trust-auth")


def test_failed_backup_alerts_every_routed_channel_then_success_resolves(
        channels, receivers, broken_target, source_db, django_capture_on_commit_callbacks):
    # A real backup that fails: the job's end evaluates the rules, and the outbox is sent once it commits.
    with django_capture_on_commit_callbacks(execute=True):
        job = DatabaseBackupJob.run_now(target=broken_target, actor=SYSTEM)
    assert job.status == "failed"
    alert = Alert.objects.get(type="backup_failed")
    assert (alert.severity, alert.status, alert.target, alert.count) == ("critical", "open", "ledger", 1)
    assert alert.first_seen == alert.last_seen
    assert Delivery.objects.filter(alert=alert, event="trigger").count() == 5
    assert not Delivery.objects.exclude(status=DeliveryStatus.SENT).exists()

    mail = receivers["smtp"].messages
    assert len(mail) == 1 and mail[0].rcpt_tos == ["oncall@example.com"]
    assert b"backup_failed" in mail[0].content and b"ledger" in mail[0].content
    slack = http_events(receivers["slack"])
    assert len(slack) == 1 and "backup_failed" in slack[0]["text"]
    assert receivers["slack"].requests[0].path == "/hook/T0KEN-SECRET"
    [trigger] = http_events(receivers["pagerduty"])
    assert trigger["event_action"] == "trigger" and trigger["routing_key"] == "R0UTINGKEY"
    assert trigger["payload"]["severity"] == "critical" and trigger["dedup_key"] == alert.dedup_key
    hooks = http_events(receivers["webhook"])
    assert len(hooks) == 2  # the webhook channel and the critical-only one
    assert {h["alert"]["id"] for h in hooks} == {alert.pk}

    # A second failure: the same alert, counted, no new notification.
    with django_capture_on_commit_callbacks(execute=True):
        DatabaseBackupJob.run_now(target=broken_target, actor=SYSTEM)
    assert Alert.objects.count() == 1
    alert.refresh_from_db()
    assert alert.count == 2 and alert.status == "open" and alert.last_seen > alert.first_seen
    assert len(receivers["slack"].requests) == 1 and len(receivers["pagerduty"].requests) == 1

    # Mended: the next backup succeeds and the alert resolves itself; PagerDuty resolves the same incident.
    broken_target.port = source_db.port
    save_target(target=broken_target, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        assert DatabaseBackupJob.run_now(target=broken_target, actor=SYSTEM).status == "succeeded"
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.auto_resolved and alert.resolved_by is None
    resolve = http_events(receivers["pagerduty"])[-1]
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == trigger["dedup_key"]
    assert "payload" not in resolve
    assert "Resolved" in http_events(receivers["slack"])[-1]["text"]
    assert len(receivers["smtp"].messages) == 2 and b"Resolved" in receivers["smtp"].messages[1].content
    assert [h["event"] for h in http_events(receivers["webhook"])] == ["trigger", "trigger", "resolve", "resolve"]


def failed_backup(target: DatabaseTarget, *, error="pg_dump: connection refused", **fields) -> Backup:
    from apps.storage.services import ensure_default_location

    now = timezone.now()
    return Backup.objects.create(database_target=target, status=BackupStatus.FAILED, error=error,
                                 storage_location=ensure_default_location(), started_at=now, finished_at=now, **fields)


@pytest.fixture
def plain_target(db):
    return save_target(target=DatabaseTarget(name="orders", host="127.0.0.1", port=free_port(), dbname="orders",
                                             user="app"), actor=SYSTEM)


def test_receiver_down_gets_the_delivery_when_it_comes_back(db, plain_target, settings):
    settings.MONITORING_RETRY_BASE_SECONDS = 60
    hook = HttpReceiver()  # not started: nothing listens on its port
    add_channel("hook", "webhook", secrets={"url": hook.url, "hmac_key": HMAC_KEY})
    failed_backup(plain_target)
    engine.evaluate()
    alert = Alert.objects.get()

    assert outbox.deliver_due() == {"sent": 0, "retry": 1, "failed": 0}
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert "ConnectionError" in delivery.error and "T0KEN" not in delivery.error  # the URL's secret path stays out
    first_retry = delivery.next_attempt_at
    assert timedelta(seconds=50) < first_retry - delivery.last_attempt_at < timedelta(seconds=70)

    # Still down at the retry: the wait doubles. Meanwhile the operator resolves: that waits behind the trigger.
    assert outbox.deliver_due(now=first_retry + timedelta(seconds=1))["retry"] == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert delivery.next_attempt_at - delivery.last_attempt_at > timedelta(seconds=100)
    services.resolve(alert=alert, actor=SYSTEM, note="restarted the box")
    assert outbox.deliver_due()["sent"] == 0  # the resolve may not overtake the trigger

    hook.start()
    try:
        counts = outbox.deliver_due(now=delivery.next_attempt_at + timedelta(seconds=1))
    finally:
        hook.stop()
    assert counts == {"sent": 2, "retry": 0, "failed": 0}
    assert [r.json["event"] for r in hook.requests] == ["trigger", "resolve"]
    assert hook.requests[1].json["note"] == "restarted the box"
    trigger = Delivery.objects.get(event="trigger")
    assert trigger.status == DeliveryStatus.SENT and trigger.attempts == 3 and trigger.response_code == 200


def test_channel_refusing_for_good_is_not_retried(db, plain_target):
    hook = HttpReceiver(status=404, answer=b"no such hook").start()
    try:
        add_channel("gone", "webhook", secrets={"url": hook.url, "hmac_key": HMAC_KEY})
        failed_backup(plain_target)
        engine.evaluate()
        assert outbox.deliver_due() == {"sent": 0, "retry": 0, "failed": 1}
    finally:
        hook.stop()
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.response_code == 404
    assert delivery.response == "no such hook"


def test_webhook_signature_verifies(db, plain_target):
    hook = HttpReceiver().start()
    try:
        add_channel("hook", "webhook", secrets={"url": hook.url, "hmac_key": HMAC_KEY})
        failed_backup(plain_target)
        engine.evaluate()
        outbox.deliver_due()
    finally:
        hook.stop()
    [req] = hook.requests
    signature, timestamp = req.headers[SIGNATURE_HEADER], req.headers[TIMESTAMP_HEADER]
    assert signature.startswith("sha256=")
    assert verify(HMAC_KEY, timestamp, req.body, signature)
    assert not verify("another-key", timestamp, req.body, signature)
    assert not verify(HMAC_KEY, timestamp, req.body.replace(b"orders", b"orderz"), signature)
    assert not verify(HMAC_KEY, str(int(timestamp) - 3600), req.body, signature)  # a replayed old message
    assert req.json["alert"]["type"] == "backup_failed" and req.json["alert"]["target"] == "orders"


def test_alert_lifecycle_dedup_reopen_and_operator_resolve(db, plain_target):
    first = failed_backup(plain_target)
    assert engine.evaluate()["opened"] == 1
    assert engine.evaluate()["updated"] == 1  # the same failure seen again: not counted twice
    alert = Alert.objects.get()
    assert alert.count == 1 and alert.occurrence == first.pk

    # An operator resolves while the last backup is still the failed one: the next evaluation leaves it resolved.
    services.resolve(alert=alert, actor=SYSTEM, note="known: host being rebuilt")
    assert engine.evaluate().get("kept_resolved") == 1
    alert.refresh_from_db()
    assert alert.status == "resolved" and not alert.auto_resolved and alert.resolved_note.startswith("known")

    # A new failure re-opens the same alert (no second row).
    failed_backup(plain_target)
    assert engine.evaluate()["reopened"] == 1
    alert.refresh_from_db()
    assert alert.status == "open" and alert.count == 2 and alert.reopened == 1 and alert.resolved_at is None
    assert Alert.objects.count() == 1


def test_document_backup_failures_alert_by_job_type(db):
    from apps.jobs.models import Job

    now = timezone.now()
    Job.objects.create(type="documents.backup", args={"source": "contracts"}, status="failed",
                       error="bucket unreachable", started_at=now, finished_at=now)
    engine.evaluate()
    alert = Alert.objects.get()
    assert (alert.type, alert.target, alert.severity) == ("backup_failed", "contracts", "critical")
    Job.objects.create(type="documents.backup", args={"source": "contracts"}, status="succeeded", started_at=now,
                       finished_at=now)
    engine.evaluate()
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved


def test_test_send_reaches_email(db, settings):
    smtp = SmtpReceiver().start()
    try:
        channel = add_channel("mail", "email", config={"to": ["a@example.com", "b@example.com"], "host": "127.0.0.1",
                                                       "port": smtp.port})
        delivery = services.test_channel(channel=channel, actor=SYSTEM)
    finally:
        smtp.stop()
    assert delivery.status == "sent" and delivery.event == "test"
    assert smtp.messages[0].rcpt_tos == ["a@example.com", "b@example.com"]
    assert b"Test notification" in smtp.messages[0].content


def test_routing_by_severity(db, plain_target):
    from datetime import timedelta as td

    high = HttpReceiver().start()
    critical = HttpReceiver().start()
    try:
        add_channel("high-and-up", "webhook", min_severity="high", secrets={"url": high.url, "hmac_key": HMAC_KEY})
        add_channel("critical-only", "webhook", min_severity="critical",
                    secrets={"url": critical.url, "hmac_key": HMAC_KEY})
        add_channel("off", "webhook", min_severity="info", secrets={"url": critical.url, "hmac_key": HMAC_KEY})
        NotificationChannel.objects.filter(name="off").update(enabled=False)
        # Backup Age (high): never backed up, added two days ago.
        DatabaseTarget.objects.filter(pk=plain_target.pk).update(created_at=timezone.now() - td(days=2))
        engine.evaluate()
        assert Alert.objects.get().type == "backup_age"
        outbox.deliver_due()
    finally:
        high.stop()
        critical.stop()
    assert [r.json["alert"]["type"] for r in high.requests] == ["backup_age"]
    assert critical.requests == []


def test_pagerduty_test_send_resolves_its_own_incident(db):
    pd = HttpReceiver(status=202, answer=b'{"status":"success"}').start()
    try:
        channel = add_channel("pd", "pagerduty", config={"events_url": pd.url}, secrets={"routing_key": "K"})
        delivery = services.test_channel(channel=channel, actor=SYSTEM)
    finally:
        pd.stop()
    assert delivery.status == "sent" and delivery.response_code == 202
    events = [(r.json["event_action"], r.json["dedup_key"]) for r in pd.requests]
    assert events == [("trigger", f"backupsite-test-{channel.pk}"), ("resolve", f"backupsite-test-{channel.pk}")]


def test_one_active_alert_per_fingerprint_even_when_two_evaluations_race(db, plain_target, monkeypatch):
    from django.db import IntegrityError, transaction

    failed_backup(plain_target)
    engine.evaluate()
    alert = Alert.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():  # the database itself refuses a second one
        Alert.objects.create(type=alert.type, severity=alert.severity, fingerprint=alert.fingerprint,
                             target=alert.target, message="again", first_seen=alert.first_seen,
                             last_seen=alert.last_seen)
    # The loser of a race (it found no active alert, then the insert clashed) updates the winner's row instead.
    from apps.monitoring.rules.base import Condition, get
    from apps.monitoring.thresholds import Thresholds

    rule = get("backup_failed")(Thresholds())
    cond = Condition(fingerprint=alert.fingerprint, target="orders", message="seen again", occurrence="other")
    real_apply = engine._apply
    calls = []

    def racing_apply(rule_, cond_, now_):
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("simulated: another process inserted first")
        return real_apply(rule_, cond_, now_)

    monkeypatch.setattr(engine, "_apply", racing_apply)
    assert engine._apply_with_retry(rule, cond, timezone.now()) == "updated"
    assert len(calls) == 2
    alert.refresh_from_db()
    assert Alert.objects.count() == 1 and alert.count == 2 and alert.message == "seen again"


def test_a_rule_that_crashes_leaves_its_alerts_alone(db, plain_target, monkeypatch):
    from apps.monitoring.rules.backup_failed import BackupFailed

    failed_backup(plain_target)
    engine.evaluate()

    def broken(self, *, now):
        raise RuntimeError("rule bug")
        yield

    monkeypatch.setattr(BackupFailed, "evaluate", broken)
    assert engine.evaluate()["rule_errors"] == 1
    assert Alert.objects.get().status == "open"  # not resolved because its rule failed
