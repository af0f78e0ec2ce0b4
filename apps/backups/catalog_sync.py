"""Rebuild the catalog from one storage location alone (DESIGN §1.4): `manage.py catalog_sync LOCATION`.

Every `targets/<target>/backups/<id>/manifest.json` in the location is a committed backup (the manifest is
written last): it becomes a Backup row with the manifest's id, kind, format, parent, times, server facts and
row counts, one BackupArtifact per artifact (key, sizes, both SHA-256s, compression, cipher, key id), and a
Replica row saying this location holds it. A backup directory without a manifest is debris of an interrupted
backup or deletion and is ignored, and so is a manifest whose artifacts are not all there with the sizes it
gives. Rows already in the catalog are kept as they are (a second run, or a run on another location, only adds
what is missing, such as this location's Replica row). Parents are linked once every backup is in, so a chain
is rebuilt whatever order the listing gives.

WAL (`targets/<target>/wal/<timeline>/<file>`, docs/FORMAT.md §1.1) has no manifest: each file is decoded
with the configured keys (every frame authenticated) to learn its sizes and checksums, and becomes a
WalSegment row. `last_commit_at` is not recovered (it needs pg_waldump on the raw file).

Targets are created from the manifests (name, host, port, database) when missing, disabled and without a
user or password: they restore as they are; to back them up again, set their credentials and enable them.
"""
import logging
import re
from datetime import datetime

from django.db import transaction

from apps.backups.models import Backup, BackupArtifact, BackupStatus, Replica, ReplicaStatus, WalSegment
from apps.core.services import Actor, audit
from apps.databases.models import DatabaseTarget
from apps.jobs.progress import JobContext, note
from apps.pipeline import manifest as manifests
from apps.pipeline.artifact import ArtifactError, Decoder
from apps.pipeline.keys import KeyError_, configured_keyring
from apps.storage import backends
from apps.storage.backends import StorageError
from apps.storage.models import StorageLocation

log = logging.getLogger(__name__)

MANIFEST_KEY = re.compile(r"^targets/(?P<target>[^/]+)/backups/(?P<id>[^/]+)/manifest\.json$")
BACKUP_DIR = re.compile(r"^targets/(?P<target>[^/]+)/backups/(?P<id>[^/]+)/")
WAL_KEY = re.compile(r"^targets/(?P<target>[^/]+)/wal/(?P<tl>[0-9A-F]{8})/(?P<name>"
                     r"[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)(?P<suffix>(?:\.[a-z0-9]+)*)$")
SEGMENT = re.compile(r"^[0-9A-F]{24}(\.partial)?$")
BACKUP_COLUMNS = ("server_version", "lsn_start", "lsn_stop", "timeline", "system_identifier")


def sync_location(*, location: StorageLocation, actor: Actor, ctx: JobContext | None = None) -> dict:
    store = backends.for_location(location)
    report = {"location": location.name, "backups_added": [], "backups_known": [], "replicas_added": 0,
              "ignored": [], "targets_added": [], "wal_added": 0, "wal_known": 0, "wal_refused": []}
    keys = {info.key: info for info in store.list("targets/")}
    found = {}
    for key in sorted(keys):
        m = MANIFEST_KEY.match(key)
        if not m:
            continue
        try:
            manifest = manifests.loads(store.get_bytes(key))
        except (StorageError, ValueError) as exc:
            report["ignored"].append({"key": key, "why": f"unreadable manifest: {exc}"})
            continue
        why = _problem(manifest, m, keys)
        if why:
            report["ignored"].append({"key": key, "why": why})
            continue
        found[manifest["backup_id"]] = (key, manifest)
    dirs = {m.group("target", "id") for k in keys if (m := BACKUP_DIR.match(k))}
    manifested = {m.group("target", "id") for k in keys if (m := MANIFEST_KEY.match(k))}
    for target, backup_id in sorted(dirs - manifested):
        report["ignored"].append({"key": f"targets/{target}/backups/{backup_id}/",
                                  "why": "no manifest (never committed)"})

    with transaction.atomic():
        for backup_id, (key, manifest) in sorted(found.items(), key=lambda item: item[1][1]["created_at"]):
            _record(location, key, manifest, report)
        for backup_id, (key, manifest) in found.items():  # chains: parents may come in any order
            parent = manifest.get("parent")
            if parent and Backup.objects.filter(pk=parent).exists():
                Backup.objects.filter(pk=backup_id, parent__isnull=True).update(parent_id=parent)
            elif parent:
                report["ignored"].append({"key": key, "why": f"parent {parent} is not in this location (chain "
                                                            "incomplete; the backup is recorded without it)"})
    _sync_wal(location, store, keys, report)
    note(ctx, logger=log, message=f"catalog_sync {location.name}: {len(report['backups_added'])} backups added, "
              f"{len(report['backups_known'])} known, {report['wal_added']} WAL files added, "
              f"{len(report['ignored'])} ignored")
    audit(actor=actor, action="storage.catalog_synced", obj=location,
          details={k: (len(v) if isinstance(v, list) else v) for k, v in report.items() if k != "location"})
    return report


def _problem(manifest: dict, match, keys: dict) -> str | None:
    if manifest.get("backup_id") != match.group("id"):
        return f"the manifest is of backup {manifest.get('backup_id')!r}, not of its directory"
    if (manifest.get("target") or {}).get("name") != match.group("target"):
        return "the manifest names another target than its directory"
    artifacts = manifest.get("artifacts") or []
    if not artifacts:
        return "the manifest lists no artifact"
    for a in artifacts:
        info = keys.get(a.get("key", ""))
        if info is None:
            return f"{a.get('key')} is missing"
        if info.size != a.get("size_stored"):
            return f"{a['key']} is {info.size} bytes, the manifest says {a.get('size_stored')}"
    return None


def _target(manifest: dict, location: StorageLocation, report: dict) -> DatabaseTarget:
    t = manifest["target"]
    target = DatabaseTarget.objects.filter(name=t["name"]).first()
    if target is None:
        target = DatabaseTarget.objects.create(
            name=t["name"], host=t.get("host") or "localhost", port=t.get("port") or 5432,
            dbname=t.get("dbname") or t["name"], user="", storage_location=location, enabled=False,
            description=f"Rebuilt by catalog_sync from {location.name}: set its user and password, then enable it.",
        )
        report["targets_added"].append(target.name)
    return target


def _record(location: StorageLocation, key: str, manifest: dict, report: dict) -> None:
    backup_id = manifest["backup_id"]
    artifacts = manifest["artifacts"]
    stored = sum(a["size_stored"] for a in artifacts)
    if Backup.objects.filter(pk=backup_id).exists():
        report["backups_known"].append(backup_id)
    else:
        main = artifacts[0]
        fields = {c: manifest[c] for c in BACKUP_COLUMNS if manifest.get(c) is not None}
        if "system_identifier" in fields:
            fields["system_identifier"] = str(fields["system_identifier"])
        if not fields.get("server_version"):
            fields["server_version"] = str((manifest.get("postgres") or {}).get("server_version", ""))
        Backup.objects.create(
            pk=backup_id, database_target=_target(manifest, location, report), kind=manifest["kind"],
            format=manifest["format"], status=BackupStatus.SUCCEEDED, storage_location=location,
            started_at=_time(manifest.get("started_at")), finished_at=_time(manifest.get("finished_at")),
            size_raw=sum(a["size_raw"] for a in artifacts), size_stored=stored, sha256=main["sha256_stored"],
            compression=main["compression"], encryption_key_id=main.get("key_id", ""),
            row_counts=manifest.get("row_counts") or {}, manifest_key=key, **fields,
        )
        # created_at is auto_now_add: set it afterwards, so ordering and retention see the backup's real age.
        Backup.objects.filter(pk=backup_id).update(created_at=_time(manifest["created_at"]))
        for a in artifacts:
            BackupArtifact.objects.create(
                backup_id=backup_id, name=a["name"], key=a["key"], size_raw=a["size_raw"],
                size_stored=a["size_stored"], sha256_raw=a["sha256_raw"], sha256_stored=a["sha256_stored"],
                compression=a["compression"], cipher=a["cipher"], key_id=a.get("key_id", ""),
            )
        report["backups_added"].append(backup_id)
    _, created = Replica.objects.get_or_create(
        backup_id=backup_id, location=location,
        defaults={"status": ReplicaStatus.PRESENT, "bytes": stored, "attempts": 0},
    )
    report["replicas_added"] += int(created)


def _sync_wal(location: StorageLocation, store, keys: dict, report: dict) -> None:
    keyring = configured_keyring()
    for key in sorted(keys):
        m = WAL_KEY.match(key)
        if not m:
            continue
        target = DatabaseTarget.objects.filter(name=m.group("target")).first()
        if target is None:
            report["wal_refused"].append({"key": key, "why": "no backup of its target in the catalog"})
            continue
        name = m.group("name")
        if WalSegment.objects.filter(database_target=target, name=name).exists():
            report["wal_known"] += 1
            continue
        decoder = Decoder(keyring=keyring)
        try:
            for _ in decoder.decode(store.get_stream(key)):
                pass  # every frame authenticated; the stats are complete at the end
        except (ArtifactError, KeyError_, StorageError) as exc:
            report["wal_refused"].append({"key": key, "why": str(exc)})
            continue
        st = decoder.stats
        WalSegment.objects.create(
            database_target=target, name=name, timeline=int(m.group("tl"), 16),
            start_lsn=_start_lsn(name, st.size_raw), storage_location=location, key=key, size_raw=st.size_raw,
            size_stored=st.size_stored, sha256_raw=st.sha256_raw, sha256_stored=st.sha256_stored,
            compression=st.compression, cipher=st.cipher, key_id=st.key_id,
        )
        report["wal_added"] += 1


def _start_lsn(name: str, segment_size: int) -> str:
    """First LSN of a segment from its name (segno = X * (2^32 / size) + Y); empty for other WAL files."""
    if not SEGMENT.match(name) or segment_size <= 0 or (1 << 32) % segment_size:
        return ""
    segno = int(name[8:16], 16) * ((1 << 32) // segment_size) + int(name[16:24], 16)
    lsn = segno * segment_size
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


