"""The postgresql.conf lines that make PostgreSQL archive to (and recover from) a target.

PostgreSQL runs archive_command / restore_command through /bin/sh, as its own OS user, with its own
environment. So each line names the interpreter and manage.py by absolute path, and carries the
environment file (BACKUPSITE_ENV_FILE, read by the settings) rather than any setting or secret.
Quoting, from the inside out: shell words (shlex), `%` doubled for PostgreSQL's placeholders, then
the configuration string with single quotes doubled.
"""
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from apps.core.errors import UserError

ARCHIVE_TIMEOUT = 60  # seconds: the RPO bound while the database is written to


@dataclass(frozen=True)
class Invocation:
    """How PostgreSQL's shell starts manage.py: interpreter, manage.py and environment file, all absolute."""

    python: str
    manage: str
    env_file: str

    @classmethod
    def current(cls, *, python: str | None = None, env_file: str | None = None) -> "Invocation":
        """This process's interpreter and project; the environment file given, else the one this process read."""
        env_file = env_file or settings.ENV_FILE
        if not env_file:
            raise UserError("Name the environment file PostgreSQL's commands should read (--env-file, or run "
                            "with BACKUPSITE_ENV_FILE set): they do not inherit this shell's environment.")
        # Not resolved: a virtualenv's bin/python is a symlink that must stay one.
        python = python or sys.executable
        inv = cls(python=python, manage=str(Path(settings.BASE_DIR, "manage.py")), env_file=env_file)
        for what, value in (("interpreter", inv.python), ("environment file", inv.env_file)):
            if not Path(value).is_absolute():
                raise UserError(f"The {what} must be an absolute path: PostgreSQL runs the command from its "
                                "data directory.")
        return inv

    def command(self, *words: str) -> str:
        """A shell command line running `manage.py WORDS...`; `%p`/`%f` words stay PostgreSQL placeholders."""
        literal = [f"BACKUPSITE_ENV_FILE={shlex.quote(self.env_file)}", shlex.quote(self.python),
                   shlex.quote(self.manage)]
        parts = [w.replace("%", "%%") for w in literal]
        for word in words:
            parts.append(f'"{word}"' if word in ("%p", "%f") else shlex.quote(word).replace("%", "%%"))
        return " ".join(parts)


AHEAD = 64  # ready files archived by each wal_push that has to start (with a spool)


def archive_command(target_name: str, inv: Invocation, *, spool: str | None = None, ahead: int = AHEAD) -> str:
    """wal_push as archive_command; with a spool directory, a file archived ahead is acknowledged by the shell.

    Each wal_push is a Django process (about a second, so about 16 MB/s of WAL at most); with a spool it also
    archives up to `ahead` other ready files and leaves a marker holding each one's SHA-256. PostgreSQL's call
    for such a file then only compares the file's SHA-256 with its marker (sha256sum, no Python) and removes
    the marker, as pgBackRest's asynchronous archive-push acknowledges from its spool. A file that changed,
    or has no marker, goes to wal_push as before. The spool must be a directory only the server user writes.
    """
    if not spool:
        return inv.command("wal_push", target_name, "%p")
    push = inv.command("wal_push", target_name, "%p", "--spool", spool, "--ahead", str(ahead))
    marker = shlex.quote(spool).replace("%", "%%") + "/%f.ok"
    return (f'if [ -f {marker} ] && [ "$(sha256sum < "%p" | cut -c1-64)" = "$(cat {marker})" ]; '
            f'then rm -f {marker}; else {push}; fi')


FILLING = ".filling"  # in a recovery's spool while it is being filled (apps/recovery/wal_spool.py)
PREFETCH = 16  # segments fetched ahead into the spool by each wal_fetch that has to start


def restore_command(target_name: str, inv: Invocation, *, spool: str | None = None, prefetch: int = PREFETCH) -> str:
    """wal_fetch as restore_command; with a spool directory, a segment fetched ahead is moved in by the shell.

    Each wal_fetch is a Django process (about a second); with a spool it also fetches the next `prefetch`
    archived segments, authenticated, into the spool, and the following requests are served by `mv` alone
    (as pgBackRest's asynchronous archive-get). The spool must be a directory only the server user writes.

    A file moved in leaves an empty `<name>.served` marker. PostgreSQL asks for the segment holding the last
    record again as recovery ends (it tries the archive before pg_wal); the file it was given is then still in
    pg_wal under its own name (the server keeps what restore_command gives it), so that copy is served again
    rather than a wal_fetch process started. Only a file this recovery was served is taken from pg_wal (never
    one the backup brought there), and the server still checks every WAL page's address and timeline.
    """
    if not spool:
        return inv.command("wal_fetch", target_name, "%f", "%p")
    fetch = inv.command("wal_fetch", target_name, "%f", "%p", "--spool", spool, "--prefetch", str(prefetch))
    ahead = shlex.quote(spool).replace("%", "%%") + "/%f"
    # While the recovery still fills the spool (FILLING marker), wait for the file to appear (at most 30 s)
    # rather than start a wal_fetch process: the server may start before every segment is fetched.
    filling = shlex.quote(spool).replace("%", "%%") + "/" + FILLING
    wait = (f'n=0; while [ -f {filling} ] && [ ! -f {ahead} ] && [ ! -f {ahead}.missing ] && '
            f'[ ! -f {ahead}.served ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; ')
    return wait + (f'if [ -f {ahead} ]; then mv -f {ahead} "%p" && {{ true > {ahead}.served || true; }}; '
                   f'elif [ -f {ahead}.missing ]; then exit 1; '
                   f'elif [ -f {ahead}.served ] && [ -f "pg_wal/%f" ]; then cp "pg_wal/%f" "%p"; '
                   f'else {fetch}; fi')


def conf_value(value: str) -> str:
    """A postgresql.conf string literal: the server reads backslash escapes in it, so backslashes are doubled too."""
    if any(c in value for c in "\n\r\0"):
        raise UserError("A configuration value may not hold a line break or NUL.")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def archive_settings(target_name: str, inv: Invocation, *, timeout: int = ARCHIVE_TIMEOUT,
                     spool: str | None = None) -> dict[str, str]:
    """The archiving lines of postgresql.conf, as {name: value as written in the file}."""
    return {
        "archive_mode": "on",
        "archive_command": conf_value(archive_command(target_name, inv, spool=spool)),
        "archive_timeout": str(timeout),
    }


def recovery_settings(target_name: str, inv: Invocation) -> dict[str, str]:
    """restore_command for a cluster recovering from this target's archive (PITR, standby)."""
    return {"restore_command": conf_value(restore_command(target_name, inv))}
