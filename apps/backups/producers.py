"""The `produce` step of each backup method (steps.Producer): what it streams and what it records.

A new method (physical base backup, WAL segment, document version) is a new class
registered in PRODUCERS; the lease, put, manifest and record steps are shared.
Producers connect lazily, inside the steps, so a failure to connect (or to unseal
a password) fails the backup like any other error.
"""
from collections.abc import Iterator

from apps.backups.models import Backup
from apps.databases.connection import PgConn
from apps.databases.engines import logical


class LogicalProducer:
    """pg_dump in the backup's format, in an exported snapshot; row counts per table from the same snapshot."""

    def __init__(self, backup: Backup):
        self.backup = backup
        self.dump: logical.LogicalDump | None = None

    def artifacts(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        conn = PgConn.for_target(self.backup.database_target)
        self.dump = logical.LogicalDump(conn, fmt=self.backup.format, app_name=f"backupsite-backup-{self.backup.pk}")
        yield self.dump.artifact_name, self.dump.chunks()

    def manifest_fields(self) -> dict:
        return {"postgres": self.dump.info.server, "row_counts": self.dump.info.row_counts}

    def backup_fields(self) -> dict:
        return {"server_version": self.dump.info.server.get("server_version", ""),
                "row_counts": self.dump.info.row_counts}


PRODUCERS = {"logical": LogicalProducer}


def producer_for(backup: Backup, method: str = "logical"):
    return PRODUCERS[method](backup)
