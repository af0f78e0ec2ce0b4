from dataclasses import replace

from django.db import transaction

from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget


# The stored password belongs to this server, user and transport: when one of them changes, it goes.
CREDENTIAL_FIELDS = ("host", "port", "user", "sslmode")
AUDITED_FIELDS = ("name", "description", "host", "port", "dbname", "user", "sslmode", "storage_location_id",
                  "wal_archiving", "default_method", "data_directory", "tags", "enabled")


@transaction.atomic
def upsert_target_from_dsn(
    *, name: str, dsn: str, actor: Actor, password: str | None = None, **fields
) -> tuple[DatabaseTarget, bool]:
    """`password` (if given) wins over one inside the DSN; with neither, a stored password is kept
    unless the host, port, user or sslmode change (see save_target)."""
    conn = PgConn.from_dsn(dsn)
    if password is not None:
        conn = replace(conn, password=password)
    target = DatabaseTarget.objects.filter(name=name).first()
    created = target is None
    target = target or DatabaseTarget(name=name)
    target.host, target.port, target.dbname, target.user = conn.host, conn.port, conn.dbname, conn.user
    target.sslmode = conn.sslmode
    for key, value in fields.items():
        setattr(target, key, value)
    return save_target(target=target, actor=actor, password=conn.password or None), created


def _changed_fields(target: DatabaseTarget) -> list[str]:
    """Fields whose value differs from the saved row (none for a new target)."""
    if target._state.adding or target.pk is None:
        return []
    saved = DatabaseTarget.objects.filter(pk=target.pk).values(*AUDITED_FIELDS).first() or {}
    return [f for f in AUDITED_FIELDS if f in saved and saved[f] != getattr(target, f)]


@transaction.atomic
def save_target(*, target: DatabaseTarget, actor: Actor, password: str | None = None) -> DatabaseTarget:
    """Validate and save; `password` None keeps the stored one, "" clears it.

    A change of host, port, user or sslmode clears the stored password unless a new one comes with it:
    the old server's password is never sent to a new server. The audit event lists the changed fields.
    """
    created = target._state.adding
    changed = _changed_fields(target)
    password_cleared = False
    if password is not None:
        target.set_password(password)
    elif target.has_password and set(changed) & set(CREDENTIAL_FIELDS):
        target.password_sealed = ""
        password_cleared = True
    try:
        target.full_clean()
    except Exception as exc:
        messages = getattr(exc, "message_dict", None)
        if messages:
            raise UserError("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from None
        raise
    target.save()
    details = {"password_changed": password is not None or password_cleared}
    if not created:
        details["changed"] = changed
        if password_cleared:
            details["password_cleared"] = "host, port, user or sslmode changed without a new password"
    audit(actor=actor, action="target.created" if created else "target.updated", obj=target, details=details)
    return target


def delete_target(*, target: DatabaseTarget, actor: Actor) -> None:
    if target.backups.exists():
        raise UserError(f"Target {target.name} has backups; disable it instead of deleting it.")
    audit(actor=actor, action="target.deleted", obj=target, details={"name": target.name})
    target.delete()


@transaction.atomic
def set_target_locations(*, target: DatabaseTarget, primary, replicas: list, actor: Actor) -> DatabaseTarget:
    """Where the target's backups go: written to `primary`, then copied to each of `replicas` (copies and
    restore fallbacks go through replicas by name). `primary=None` keeps the target's current setting (a named
    location, or the primary location when it names none)."""
    from apps.storage.services import ensure_default_location

    effective = primary or target.storage_location or ensure_default_location()
    names = [effective.name] + [r.name for r in replicas]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"Location {twice[0]} is named twice; the primary and each replica must differ.")
    disabled = [loc.name for loc in [effective, *replicas] if not loc.enabled]
    if disabled:
        raise UserError(f"Location {disabled[0]} is disabled.")
    if primary is not None:
        target.storage_location = primary
        target.save(update_fields=["storage_location", "updated_at"])
    target.replica_locations.set(replicas)
    audit(actor=actor, action="database.target.locations_set", obj=target,
          details={"primary": effective.name, "replicas": [r.name for r in replicas]})
    return target
