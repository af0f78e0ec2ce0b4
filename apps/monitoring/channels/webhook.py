"""Generic webhook: the notification as JSON, signed with HMAC-SHA256.

Headers: `X-Backupsite-Timestamp` (Unix seconds) and `X-Backupsite-Signature: sha256=<hex>`, the HMAC-SHA256
with the channel's key of `<timestamp>.<raw body>`. A receiver recomputes it, compares in constant time, and
rejects old timestamps (replays). docs/OPERATIONS.md shows a verifier."""
import hashlib
import hmac
import json
import time

from apps.monitoring.channels.base import Channel
from apps.monitoring.channels.http import check_url, post_json

SIGNATURE_HEADER = "X-Backupsite-Signature"
TIMESTAMP_HEADER = "X-Backupsite-Timestamp"


def sign(key: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(key: str, timestamp: str, body: bytes, signature: str, *, max_age: float = 300,
           now: float | None = None) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        fresh = abs((now or time.time()) - int(timestamp)) <= max_age
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(key, timestamp, body), signature)


class WebhookChannel(Channel):
    kind = "webhook"
    label = "Webhook (JSON, HMAC-SHA256 signed)"
    secret_fields = {"url": "Where to POST (may hold a token)", "hmac_key": "Key of the HMAC-SHA256 signature"}
    required = ("url", "hmac_key")

    @classmethod
    def check_values(cls, *, config, secrets):
        if secrets.get("url"):
            check_url(secrets["url"], "webhook URL")

    def send(self, note):
        body = json.dumps(note.as_dict(), default=str, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self.secrets["hmac_key"], timestamp, body)}
        return post_json(self.secrets["url"], body, headers=headers)
