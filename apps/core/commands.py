"""Shared bits of the management commands."""
import json

from django.core.management.base import CommandError

from apps.core.models import Interface
from apps.core.services import Actor


def cli_actor() -> Actor:
    import getpass

    try:
        who = getpass.getuser()
    except Exception:
        who = "unknown"
    return Actor(via=Interface.CLI, extra={"name": f"cli:{who}"})


def print_json(command, data: dict) -> None:
    command.stdout.write(json.dumps(data, default=str, sort_keys=True))


def fail(message: str) -> CommandError:
    return CommandError(message, returncode=1)
