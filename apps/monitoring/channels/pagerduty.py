"""PagerDuty Events API v2: trigger when an alert opens, acknowledge and resolve with the same dedup_key."""
import json

from apps.monitoring.channels.base import Channel
from apps.monitoring.channels.http import check_url, post_json

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"critical": "critical", "high": "error", "warning": "warning", "info": "info"}
ACTION = {"trigger": "trigger", "test": "trigger", "acknowledge": "acknowledge", "resolve": "resolve"}


class PagerDutyChannel(Channel):
    kind = "pagerduty"
    label = "PagerDuty (Events API v2)"
    config_fields = {"events_url": f"Events API endpoint (default {EVENTS_URL})", "source": "Source shown in PagerDuty"}
    secret_fields = {"routing_key": "Integration (routing) key of the PagerDuty service"}
    required = ("routing_key",)

    @classmethod
    def check_values(cls, *, config, secrets):
        if config.get("events_url"):
            check_url(config["events_url"], "events URL")

    def send(self, note):
        body = {"routing_key": self.secrets["routing_key"], "event_action": ACTION[note.event],
                "dedup_key": note.dedup_key}
        if body["event_action"] == "trigger":
            body["payload"] = {
                "summary": f"{note.type} {note.target}: {note.message}"[:1024],
                "source": self.config.get("source") or "backupsite",
                "severity": SEVERITY.get(note.severity, "error"),
                "component": note.target, "class": note.type, "timestamp": note.first_seen.isoformat(),
                "custom_details": {"count": note.count, "alert_id": note.alert_id, **note.details},
            }
            if note.as_dict()["link"]:
                body["links"] = [{"href": note.link, "text": "Alert in the backup console"}]
        url = self.config.get("events_url") or EVENTS_URL
        answer = post_json(url, json.dumps(body, default=str).encode())
        if note.event == "test":  # a test must not leave an incident open: resolve it at once, same dedup_key
            post_json(url, json.dumps({"routing_key": body["routing_key"], "event_action": "resolve",
                                       "dedup_key": note.dedup_key}).encode())
        return answer
