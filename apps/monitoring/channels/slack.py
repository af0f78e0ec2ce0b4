"""Slack incoming webhook: the webhook URL (its path is the token) is a secret."""
import json

from apps.monitoring.channels.base import Channel
from apps.monitoring.channels.http import check_url, post_json

COLOURS = {"critical": "#b42318", "high": "#dc6803", "warning": "#eaaa08", "info": "#3b6fd8"}


class SlackChannel(Channel):
    kind = "slack"
    label = "Slack (incoming webhook)"
    secret_fields = {"webhook_url": "https://hooks.slack.com/services/... (any http(s) URL: tests use a local one)"}
    required = ("webhook_url",)

    @classmethod
    def check_values(cls, *, config, secrets):
        if secrets.get("webhook_url"):
            check_url(secrets["webhook_url"], "webhook URL")

    def send(self, note):
        colour = "#17803d" if note.event == "resolve" else COLOURS.get(note.severity, "#666666")
        body = {
            "text": note.title,
            "attachments": [{"color": colour, "title": note.title, "text": note.text(),
                             "fields": [{"title": "Target", "value": note.target, "short": True},
                                        {"title": "Count", "value": str(note.count), "short": True}]}],
        }
        return post_json(self.secrets["webhook_url"], json.dumps(body).encode())
