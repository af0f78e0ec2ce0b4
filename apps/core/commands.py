"""Shared bits of the management commands."""
import json
import sys

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


def add_password_options(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password-file", help="Read the password from this file (keeps it out of `ps`).")
    group.add_argument("--password-stdin", action="store_true", help="Read the password from standard input.")


def password_from_options(options) -> str | None:
    """The password given by --password-file / --password-stdin, if any (trailing newline stripped)."""
    if options.get("password_file"):
        try:
            with open(options["password_file"]) as fh:
                return fh.read().rstrip("\n")
        except OSError as exc:
            raise fail(f"Cannot read the password file: {exc.strerror}.")
    if options.get("password_stdin"):
        return sys.stdin.readline().rstrip("\n")
    return None


def fail(message: str) -> CommandError:
    return CommandError(message, returncode=1)
