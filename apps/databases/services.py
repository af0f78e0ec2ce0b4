from dataclasses import replace

from django.db import transaction

from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget


@transaction.atomic
def upsert_target_from_dsn(
    *, name: str, dsn: str, actor: Actor, password: str | None = None, **fields
) -> tuple[DatabaseTarget, bool]:
    """`password` (if given) wins over one inside the DSN; with neither, a stored password is kept."""
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
    if conn.password:
        target.set_password(conn.password)
    return save_target(target=target, actor=actor), created


def save_target(*, target: DatabaseTarget, actor: Actor, password: str | None = None) -> DatabaseTarget:
    """Validate and save; `password` None keeps the stored one, "" clears it."""
    created = target._state.adding
    if password is not None:
        target.set_password(password)
    try:
        target.full_clean()
    except Exception as exc:
        messages = getattr(exc, "message_dict", None)
        if messages:
            raise UserError("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from None
        raise
    target.save()
    audit(actor=actor, action="target.created" if created else "target.updated", obj=target,
          details={"password_changed": password is not None})
    return target


def delete_target(*, target: DatabaseTarget, actor: Actor) -> None:
    if target.backups.exists():
        raise UserError(f"Target {target.name} has backups; disable it instead of deleting it.")
    audit(actor=actor, action="target.deleted", obj=target, details={"name": target.name})
    target.delete()
