"""What a channel is given to send: the alert as it is now, and what happened to it."""
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone


@dataclass(frozen=True)
class Notification:
    event: str  # trigger, acknowledge, resolve, test
    alert_id: str
    dedup_key: str
    type: str
    severity: str
    status: str
    target: str
    message: str
    count: int
    first_seen: datetime
    last_seen: datetime
    details: dict = field(default_factory=dict)
    note: str = ""
    by: str = ""

    @classmethod
    def of(cls, delivery) -> "Notification":
        alert = delivery.alert
        if alert is None:
            return cls.test(delivery.channel)
        note, by = "", ""
        if delivery.event == "acknowledge":
            note, by = alert.acknowledged_note, alert.acknowledged_by.get_username() if alert.acknowledged_by else ""
        elif delivery.event == "resolve":
            note = alert.resolved_note
            by = alert.resolved_by.get_username() if alert.resolved_by else ("auto" if alert.auto_resolved else "")
        return cls(event=delivery.event, alert_id=alert.pk, dedup_key=alert.dedup_key, type=alert.type,
                   severity=alert.severity, status=alert.status, target=alert.target, message=alert.message,
                   count=alert.count, first_seen=alert.first_seen, last_seen=alert.last_seen, details=alert.details,
                   note=note, by=by)

    @classmethod
    def test(cls, channel) -> "Notification":
        now = timezone.now()
        return cls(event="test", alert_id="", dedup_key=f"backupsite-test-{channel.pk}", type="test",
                   severity="info", status="open", target=channel.name,
                   message=f"Test notification from the backup console to channel {channel.name}.", count=1,
                   first_seen=now, last_seen=now)

    @property
    def title(self) -> str:
        verb = {"trigger": "ALERT", "acknowledge": "Acknowledged", "resolve": "Resolved", "test": "Test"}[self.event]
        return f"[{verb}] {self.severity.upper()} {self.type} {self.target}"

    @property
    def link(self) -> str:
        base = settings.CONSOLE_BASE_URL.rstrip("/")
        return f"{base}/monitoring/alerts/?id={self.alert_id}" if base and self.alert_id else ""

    def as_dict(self) -> dict:
        return {
            "event": self.event, "dedup_key": self.dedup_key, "link": self.link or None,
            "alert": {"id": self.alert_id or None, "type": self.type, "severity": self.severity, "status": self.status,
                      "target": self.target, "message": self.message, "count": self.count,
                      "first_seen": self.first_seen.isoformat(), "last_seen": self.last_seen.isoformat(),
                      "details": self.details},
            "note": self.note, "by": self.by,
        }

    def text(self) -> str:
        lines = [self.title, "", self.message, "",
                 f"Status: {self.status}   Count: {self.count}",
                 f"First seen: {self.first_seen:%Y-%m-%d %H:%M:%S %Z}   Last seen: {self.last_seen:%Y-%m-%d %H:%M:%S %Z}"]
        if self.by or self.note:
            lines.append(f"By: {self.by or '-'}   Note: {self.note or '-'}")
        if self.link:
            lines += ["", self.link]
        return "\n".join(lines)
