"""Email over SMTP (Django's SMTP backend). Server settings per channel, or the EMAIL_* settings when empty;
the SMTP password is a sealed secret."""
import smtplib
import socket

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.validators import validate_email
from django.core.exceptions import ValidationError

from apps.core.errors import UserError
from apps.monitoring.channels.base import Channel, TransportError

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class EmailChannel(Channel):
    kind = "email"
    label = "Email (SMTP)"
    config_fields = {"to": "List of recipient addresses", "from": "Sender (default DEFAULT_FROM_EMAIL)",
                     "host": "SMTP server (default EMAIL_HOST)", "port": "SMTP port (default EMAIL_PORT)",
                     "username": "SMTP user", "use_tls": "STARTTLS (true/false)", "use_ssl": "SMTP over TLS"}
    secret_fields = {"password": "SMTP password"}
    required = ("to",)

    @classmethod
    def check_values(cls, *, config, secrets):
        to = config.get("to")
        if not isinstance(to, list) or not to:
            raise UserError("`to` must be a list of email addresses.")
        for address in to + ([config["from"]] if config.get("from") else []):
            try:
                validate_email(address)
            except ValidationError:
                raise UserError(f"{address!r} is not an email address.") from None
        if "port" in config and not (isinstance(config["port"], int) and 0 < config["port"] < 65536):
            raise UserError("`port` must be a number between 1 and 65535.")

    def send(self, note):
        c = self.config
        connection = get_connection(
            SMTP_BACKEND, host=c.get("host") or settings.EMAIL_HOST, port=c.get("port") or settings.EMAIL_PORT,
            username=c.get("username") or settings.EMAIL_HOST_USER,
            password=self.secrets.get("password") or settings.EMAIL_HOST_PASSWORD,
            use_tls=bool(c.get("use_tls", settings.EMAIL_USE_TLS)), use_ssl=bool(c.get("use_ssl", False)),
            timeout=settings.MONITORING_HTTP_TIMEOUT_SECONDS, fail_silently=False,
        )
        message = EmailMessage(subject=note.title, body=note.text(), from_email=c.get("from") or None,
                               to=c["to"], connection=connection,
                               headers={"X-Backupsite-Alert": note.alert_id or "test",
                                        "X-Backupsite-Event": note.event})
        try:
            message.send()
        except smtplib.SMTPRecipientsRefused as exc:
            raise TransportError(f"SMTP server refused the recipients: {list(exc.recipients)}", permanent=True,
                                 code=None) from None
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise TransportError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500], permanent=permanent,
                                 code=exc.smtp_code) from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise TransportError(f"SMTP {type(exc).__name__}: {exc}"[:500]) from None
        return 250, f"sent to {len(c['to'])} recipient(s)"
