"""What a channel kind is: a class with `send(notification)` returning (status code, response text), raising
TransportError when the message did not go through; `permanent` says whether retrying could help.

Each kind declares its settings: `config_fields` (stored as they are, shown by the API) and `secret_fields`
(sealed with apps.core.secretbox, write-only)."""
from typing import ClassVar

from apps.monitoring.registration import register

from apps.core.errors import UserError


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None, response: str = ""):
        super().__init__(message)
        self.permanent, self.code, self.response = permanent, code, response


class Channel:
    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    config_fields: ClassVar[dict[str, str]] = {}  # name -> help
    secret_fields: ClassVar[dict[str, str]] = {}
    required: ClassVar[tuple[str, ...]] = ()  # among both
    _kinds: ClassVar[dict[str, type["Channel"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(Channel._kinds, cls.kind, cls, "channel kinds")

    def __init__(self, channel):
        self.channel = channel
        self.config = channel.config or {}
        self.secrets = channel.get_secrets()

    def send(self, note) -> tuple[int | None, str]:
        raise NotImplementedError

    @classmethod
    def check(cls, *, config: dict, secrets: dict) -> None:
        """Raise UserError when the settings cannot work (unknown or missing fields, bad values)."""
        unknown = set(config) - set(cls.config_fields)
        if unknown:
            raise UserError(f"Unknown settings for a {cls.kind} channel: {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(cls.config_fields) or 'none'}).")
        unknown = set(secrets) - set(cls.secret_fields)
        if unknown:
            raise UserError(f"Unknown secrets for a {cls.kind} channel: {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(cls.secret_fields) or 'none'}).")
        missing = [name for name in cls.required if not (config.get(name) or secrets.get(name))]
        if missing:
            raise UserError(f"A {cls.kind} channel needs {', '.join(missing)}.")
        cls.check_values(config=config, secrets=secrets)

    @classmethod
    def check_values(cls, *, config: dict, secrets: dict) -> None:
        pass
