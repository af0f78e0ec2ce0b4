"""One JSON POST for the HTTP channels, its outcome sorted into sent / retry later / refused for good."""
from urllib.parse import urlsplit

from django.conf import settings

from apps.core.errors import UserError
from apps.monitoring.channels.base import TransportError

RETRY_CODES = {408, 425, 429}


def check_url(url: str, what: str) -> None:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"The {what} must be an http(s) URL.")


def post_json(url: str, body: bytes, *, headers: dict | None = None) -> tuple[int, str]:
    # requests (urllib3, charset detection, certificates) only when a notification is sent: every job's end
    # evaluates the alert rules, which imports the channels, and a backup command paid for it.
    import requests

    try:
        resp = requests.post(url, data=body, headers={"Content-Type": "application/json", **(headers or {})},
                             timeout=settings.MONITORING_HTTP_TIMEOUT_SECONDS, allow_redirects=False)
    except requests.RequestException as exc:
        # The message names the host, never the path (a Slack webhook's path is its secret).
        raise TransportError(f"{type(exc).__name__} posting to {urlsplit(url).hostname}") from None
    text = resp.text[:2000]
    if 200 <= resp.status_code < 300:
        return resp.status_code, text
    permanent = resp.status_code < 500 and resp.status_code not in RETRY_CODES
    raise TransportError(f"HTTP {resp.status_code} from {urlsplit(url).hostname}", permanent=permanent,
                         code=resp.status_code, response=text)
