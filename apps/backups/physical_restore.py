"""Restore a physical backup (a full, or the chain full → incrementals) into a new data directory.

Before a byte is written, the whole chain is checked: every link succeeded, physical, of the same
target and cluster (system identifier), its artifacts and manifest present in storage with the sizes
and checksums the catalog records. Then each link's tar is streamed through the authenticating decoder
(restores.artifact_stream) and extracted into `<pgdata>.partial`: from an older link only the files the
newest index says it holds, from the newest everything (its own files, backup_label, WAL); then each
link's page deltas over the files they change: put into the pages as the extraction processes write them
(apps/backups/delta_patch.py), or applied after (apps/backups/delta_restore.py). Only a complete directory is
renamed to `<pgdata>`; a failure removes the partial one, and a process killed midway leaves only
`<pgdata>.partial`, which the next restore to the same place clears first.

The cluster is not started and no recovery settings are written: the caller (PITR) adds those.
"""
import os
import pwd
import re
import shutil
from pathlib import Path

from apps.backups import delta_patch, delta_restore, file_index, sources
from apps.backups.models import Backup, BackupFormat, BackupKind, BackupStatus
from apps.backups.page_delta import DeltaError
from apps.backups.restores import artifact_stream
from apps.core.durable import fsync_dir
from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.jobs.progress import JobContext, note
from apps.pipeline import manifest as manifests
from apps.storage.backends import StorageError

SERVER_USER = "postgres"
TAR_ARTIFACTS = {BackupKind.FULL: "base.tar", BackupKind.INCREMENTAL: "files.tar"}
PART = re.compile(r"^base\.tar\.([1-9][0-9]*)$")  # a full's tar written in parts (apps/backups/producers.part_name)


def tar_parts(link: Backup) -> list:
    """The artifacts whose decoded bytes, concatenated in this order, are the link's tar: its tar, then (a full
    read from the data directory by several processes) base.tar.1, base.tar.2, ..."""
    artifacts = list(link.artifacts.all())
    main = [a for a in artifacts if a.name == TAR_ARTIFACTS[link.kind]]
    if link.kind != BackupKind.FULL:
        return main
    parts = sorted((int(m.group(1)), a) for a in artifacts if (m := PART.match(a.name)))
    if [n for n, _ in parts] != list(range(1, len(parts) + 1)):
        raise ChainError(f"Broken backup chain: backup {link.pk} lacks a part of its tar ({[a.name for _, a in parts]}).")
    return main + [a for _, a in parts]


class ChainError(UserError):
    """A link of the backup chain is missing, failed, or does not match the catalog."""


def backup_chain(backup: Backup, *, deep: bool = False, ctx: JobContext | None = None) -> list[Backup]:
    """The backups to restore, oldest (the full) first; ChainError if a link is broken or inconsistent.

    Each link is read from its first healthy copy (apps/backups/sources.py), noted as `link._source_backend`;
    `deep` checks the SHA-256 of every artifact too (a copy that fails it is skipped for the next one).
    """
    if backup.format != BackupFormat.BASEBACKUP:
        raise UserError(f"Backup {backup.pk} is a logical ({backup.format}) backup; restore it into a database "
                        "with --dsn, not into a data directory.")
    chain, seen, link = [], set(), backup
    while link is not None:
        if link.pk in seen:
            raise ChainError(f"The backup chain of {backup.pk} loops at {link.pk}.")
        seen.add(link.pk)
        chain.append(link)
        link = link.parent
    chain.reverse()
    for i, link in enumerate(chain):
        _check_link(link, first=i == 0, newest=backup, deep=deep, ctx=ctx)
    return chain


def _check_link(link: Backup, *, first: bool, newest: Backup, deep: bool, ctx: JobContext | None) -> None:
    broken = f"Broken backup chain: backup {link.pk}"
    if link.status != BackupStatus.SUCCEEDED:
        raise ChainError(f"{broken} is {link.status}; the chain cannot be restored past it.")
    if link.format != BackupFormat.BASEBACKUP or link.kind not in TAR_ARTIFACTS:
        raise ChainError(f"{broken} is not a physical backup ({link.kind}/{link.format}).")
    if first != (link.kind == BackupKind.FULL):
        raise ChainError(f"{broken}: a chain starts with exactly one full backup, and this one is {link.kind}.")
    if link.database_target_id != newest.database_target_id:
        raise ChainError(f"{broken} belongs to another target.")
    if not link.system_identifier or link.system_identifier != newest.system_identifier:
        raise ChainError(f"{broken} is of another cluster (system identifier {link.system_identifier or '?'}, "
                         f"expected {newest.system_identifier}).")
    artifacts = {a.name: a for a in link.artifacts.all()}
    for name in (TAR_ARTIFACTS[link.kind], file_index.NAME):
        if name not in artifacts:
            raise ChainError(f"{broken} has no {name} in the catalog.")
    tar_parts(link)  # no part missing in between
    if deep and _authenticated_frames(link, artifacts.values()) and len(sources.candidates(link)) < 2:
        # The up-front SHA-256 of every stored byte chooses between copies. With one copy of an encrypted link it
        # refuses nothing the decoder does not: no byte is written before its frame is authenticated (AES-GCM),
        # each artifact's stored SHA-256 (or, recorded in the index, its header) is checked, and a failure
        # removes the partial directory. So
        # it is skipped: a second read of every stored byte (0.4 s for 430 MiB; docs/DECISIONS.md).
        deep = False
    try:  # present with the recorded sizes (and checksums, when deep) in some location
        backend = sources.source_for(link, ctx, deep=deep)
    except UserError as exc:
        raise ChainError(f"{broken}: {exc}") from None
    try:
        manifest = manifests.loads(backend.get_bytes(link.manifest_key))
    except (StorageError, ValueError) as exc:
        raise ChainError(f"{broken}: its manifest {link.manifest_key or '(none)'} cannot be read: {exc}") from None
    listed = {m.get("name"): m for m in manifest.get("artifacts", [])}
    consistent = (
        manifest.get("backup_id") == link.pk and manifest.get("parent") == link.parent_id
        and str(manifest.get("system_identifier")) == link.system_identifier
        and set(listed) == set(artifacts)
        and all(listed[n].get("sha256_stored") == a.sha256_stored and listed[n].get("key") == a.key
                for n, a in artifacts.items())
    )
    if not consistent:
        raise ChainError(f"{broken}: its manifest does not match the catalog (altered or substituted).")


def _authenticated_frames(link: Backup, artifacts) -> bool:
    """Whether every artifact of the link is encrypted, so each frame is authenticated as it is decoded (an
    unencrypted one is only checked by its SHA-256 at the end: it is read back whole before a byte is written)."""
    return bool(link.encryption_key_id) and all(a.key_id for a in artifacts)


def request_restore(*, backup: Backup, pgdata: str, actor: Actor) -> dict:
    """Check and audit a request to restore into a data directory; returns its job's arguments."""
    if backup.format != BackupFormat.BASEBACKUP:
        raise UserError(f"Backup {backup.pk} is a logical ({backup.format}) backup; restore it into a database "
                        "with --dsn, not into a data directory.")
    if backup.status != BackupStatus.SUCCEEDED:
        raise UserError(f"Backup {backup.pk} is {backup.status}; only a succeeded backup can be restored.")
    target = Path(pgdata).absolute()
    _check_destination(target)
    args = {"backup_id": backup.pk, "pgdata": str(target)}
    audit(actor=actor, action="backup.restore.requested", obj=backup, details=args)
    return args


def restore_data_directory(backup: Backup, pgdata: str | os.PathLike, ctx: JobContext | None = None,
                           *, owner: str | None = None, verify_first: bool = True) -> dict:
    """Rebuild the data directory of `backup` (a physical full or incremental) at `pgdata`, not started.

    With `verify_first` (the default) every stored artifact of the chain is read back and its SHA-256
    compared with the catalog before anything is written, so a corrupt link fails the restore up front
    (otherwise it is still caught, by frame authentication, while extracting, and the partial directory
    is removed).

    `pgdata` must not exist or be an empty directory; its parent must exist. The result is mode 0700 and,
    when we are root, owned by `owner` (default: the postgres user). Returns what was restored:
    {"backup_id", "chain", "pgdata", "files", "bytes", "lsn_start", "lsn_stop", "timeline", "system_identifier"}.
    Raises UserError (ChainError for a broken chain) with nothing left at `pgdata`.
    """
    target = Path(pgdata).absolute()
    _check_destination(target)
    if backup.kind == BackupKind.INCREMENTAL:
        delta_patch.import_numpy()  # meanwhile, for the page deltas (waited for before the extraction's fork)
    try:
        # Everything checked before anything is written (with verify_first, every stored byte against its SHA-256).
        chain = backup_chain(backup, deep=verify_first, ctx=ctx)
        index = file_index.load(backup, backend=chain[-1]._source_backend)  # the copy just checked
        chain[-1]._own_index = index
        holders: dict[str, set[str]] = {}
        for entry in index["files"]:
            if entry["type"] == "file":
                holders.setdefault(entry["backup"], set()).add(entry["path"])
        unknown = set(holders) - {b.pk for b in chain}
        if unknown:
            raise ChainError(f"The file index of {backup.pk} refers to backups outside its chain: "
                             f"{sorted(unknown)[:3]}.")
        uid_gid = _owner_ids(owner)
        partial = target.with_name(target.name + ".partial")
        if partial.exists():
            note(ctx, f"removing {partial}, left by an interrupted restore")
            shutil.rmtree(partial)
        partial.mkdir(mode=0o700)
    except BaseException:
        delta_patch.numpy_imported()  # never left running into a later fork
        raise
    extractor = patches = None
    try:
        from apps.databases.engines import tarstream

        links = []  # (link, the parts of its tar, the files wanted from it: None for all, from the newest)
        for link in chain:
            wanted = None if link.pk == backup.pk else holders.get(link.pk, set())
            if wanted is None or wanted:
                links.append((link, tar_parts(link), wanted))
        for link, _parts, _wanted in links:
            _index_of(link)  # each link's own index (its tars' headers), read here once, not in each process
        parallel = _parallel(links)
        # The page deltas: put into the pages as the extraction processes write them (delta_patch), or applied
        # after the extraction (delta_restore, below).
        patches = delta_patch.prepare(chain, index, directory=target.parent, ctx=ctx) if parallel else None
        deltas = [] if patches else [entry["path"] for entry in index["files"] if entry.get("deltas")]
        changed = {os.path.join(partial, path) for path in deltas}  # as extracted, in the partial directory
        # Files are created owned by the server user and written back in the background as they complete, but
        # those the page deltas change after: their pages are written to the disk once, after the deltas.
        extractor = tarstream.Extractor(partial, owner=uid_gid, sync=True,
                                        rewritten=frozenset(str(tarstream.safe_relpath(p)) for p in deltas))
        for entry in index["files"]:
            if entry["type"] == "dir":
                extractor.make_dir(tarstream.safe_relpath(entry["path"]))
        delta_patch.numpy_imported()  # before the fork (and if there are no deltas to spool)
        if parallel:
            reports = _extract_in_processes(extractor, links, holders=holders, newest=backup, ctx=ctx,
                                            patches=patches)
            if patches is not None:
                try:
                    delta_patch.finish(partial, patches, reports)
                except DeltaError as exc:
                    raise ChainError(f"The page deltas of backup {patches.link.pk} do not fit the restored "
                                     f"files: {exc}.") from None
        else:
            # The files are created in a thread of their own, in the order the links will write them.
            order = {b.pk: i for i, b in enumerate(chain)}
            files = sorted((e for e in index["files"] if e["type"] == "file"), key=lambda e: order[e["backup"]])
            extractor.precreate([tarstream.safe_relpath(e["path"]) for e in files])
            for link, parts, wanted in links:
                note(ctx, f"extracting {_keys(parts)}" + ("" if wanted is None else f" ({len(wanted)} files)"))
                _extract(extractor, link=link, parts=parts, wanted=wanted, ctx=ctx)
                if wanted:
                    raise _lacking(link, len(wanted), sorted(wanted)[0])
        synced = frozenset()
        if changed:
            # The files the page deltas and the WAL completion leave as they are are fsynced meanwhile (a thread
            # doing only os calls: the delta processes forked beside it need none of its locks).
            wal = os.path.join(partial, "pg_wal") + os.sep
            early = _background(extractor.sync_files,
                                wanted=lambda path: path not in changed and not path.startswith(wal))
            try:
                delta_restore.apply_chain(partial, chain, index, ctx)  # the page deltas, over the extracted files
            except BaseException:
                early.exception()  # finished (its own error, if any, is not the one to report) before the removal
                raise
            synced = early.result()
        _complete_wal(partial, index.get("wal_segment_size"))
        _own(partial, uid_gid)  # the directories (the files already are)
        extractor.sync_all(synced=synced)  # every file and directory durable before the directory is renamed
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(partial, target)
        fsync_dir(target.parent)
    except BaseException:
        delta_patch.numpy_imported()
        if extractor is not None:
            extractor.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if patches is not None:
            patches.close()
    note(ctx, f"restored {extractor.files} files ({extractor.bytes} bytes) into {target}")
    return {"backup_id": backup.pk, "chain": [b.pk for b in chain], "pgdata": str(target),
            "locations": {b.pk: sources.source_name(b) for b in chain},
            "files": extractor.files, "bytes": extractor.bytes, "lsn_start": backup.lsn_start,
            "lsn_stop": backup.lsn_stop, "timeline": backup.timeline, "system_identifier": backup.system_identifier}


def _background(fn, **kwargs):
    """fn(**kwargs) in a thread of its own; its future."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-early-fsync")
    try:
        return pool.submit(fn, **kwargs)
    finally:
        pool.shutdown(wait=False)


def _keys(parts: list) -> str:
    return " + ".join(a.key for a in parts)


def _lacking(link: Backup, count: int, example: str) -> ChainError:
    return ChainError(f"Backup {link.pk} lacks {count} files its successors rely on (e.g. {example}).")


def _parallel(links: list) -> bool:
    """Whether the tars are extracted side by side, in forked processes (apps/documents/forked.py): a chain of
    two or more tars, or a full whose parts record where each starts (`tar_parts`), all read from local
    locations (a child opens its own storage; cloud SDKs are left out of forks, as for document restores)."""
    from apps.documents import forked

    return (forked.available() and all(link._source_backend.location.kind == "local" for link, _, _ in links)
            and (len(links) > 1 or any(_part_records(link, parts) for link, parts, _ in links)))


# Processes extracting the tars of a restore (a full's parts and the other links' tars), each taking the next
# one not yet taken, largest first: one more than the cores, so that the cores stay busy while one process waits
# (a stored page not in the cache, the writeback of dirty pages, a directory lock when creating files). On 2 cores
# 3 processes beat 2 in 8 of 12 alternating rounds (by up to 0.9 s), tied in 3, lost 1 (docs/BENCHMARKS.md).
PART_PROCESSES = (os.cpu_count() or 1) + 1


def _part_records(link: Backup, parts: list) -> list[dict] | None:
    """Where each part of a full's tar starts (`tar_parts` of its file index, authenticated like the index), one
    record per part in order; None for a full in one part, or one written before the record (its parts are
    then one chained stream, extracted in one process)."""
    if link.kind != BackupKind.FULL or len(parts) < 2:
        return None
    if not hasattr(link, "_tar_parts"):
        records = _index_of(link).get("tar_parts")
        members = [r.get("member") for r in records or ()]
        first = records[0] if records else {}
        if records is not None and ([r.get("name") for r in records] != [a.name for a in parts]
                                    or (first["offset"], first["member"], first["left"], first["pad"]) != (0, 0, 0, 0)
                                    or members != sorted(members) or members[-1] > len(link._own_index["files"])):
            raise ChainError(f"Broken backup chain: the part records of backup {link.pk} do not match its parts.")
        link._tar_parts = records
    return link._tar_parts


def _index_of(link: Backup) -> dict:
    """The link's own file index (loaded once, from the copy its chain was checked in)."""
    if not hasattr(link, "_own_index"):
        link._own_index = file_index.load(link, backend=link._source_backend)
    return link._own_index


def _expected_header(link: Backup, artifact) -> str | None:
    """The SHA-256 of the artifact's header as the link's file index records it (None before it did)."""
    return (_index_of(link).get("headers") or {}).get(artifact.name)


def _units(extractor, links: list, *, holders: dict[str, set[str]], newest: Backup) -> list[dict]:
    """What the forked processes extract, largest first: a link's whole tar, or (a full with part records)
    each part of it on its own, from its recorded start to the next part's; a part holding nothing the restore
    takes from this link (every file in it superseded by a newer link) is left unread, as pgBackRest reads only
    the files it writes. A file whose data a cut splits
    between two parts is made here, before the fork, at its full size (Extractor.create_shared): both open it
    without truncating."""
    from apps.databases.engines import tarstream

    units = []
    for link, parts, wanted in links:
        records = _part_records(link, parts)
        if records is None:
            files = sorted(holders.get(newest.pk, set())) if wanted is None else sorted(wanted)
            units.append({"link": link, "parts": parts, "wanted": wanted, "files": files, "start": None, "end": None})
            continue
        entries = link._own_index["files"]  # the full's own index: in the tar's order, record["member"] indexes it
        if wanted is not None and (missing := wanted - {e["path"] for e in entries if e["type"] == "file"}):
            raise _lacking(link, len(missing), min(missing))
        for i, record in enumerate(records):
            last = records[i + 1]["member"] if i + 1 < len(records) else len(entries)
            files = [e["path"] for e in entries[record["member"]:last] if e["type"] == "file"]
            if wanted is not None:
                files = [p for p in files if p in wanted]
            start = {**record, "write": wanted is None or record["path"] in wanted}
            if wanted is not None and not files and not start["write"]:
                continue  # every file of this part is held by a newer link (pgbench: most of the full): not read
            if i and start["left"] and start["write"]:
                extractor.create_shared(tarstream.safe_relpath(start["path"]), start["file_offset"] + start["left"])
            units.append({"link": link, "parts": parts[i:i + 1], "wanted": None if wanted is None else set(files),
                          "files": files, "start": start if i else None,
                          "end": records[i + 1] if i + 1 < len(records) else None})
    return sorted(units, key=lambda u: -sum(a.size_raw for a in u["parts"]))


def _extract_in_processes(extractor, links: list, *, holders: dict[str, set[str]], newest: Backup,
                          ctx: JobContext | None, patches: "delta_patch.Spool | None" = None) -> list[dict]:
    """Each link's tar extracted by a forked child of its own, side by side (two links of a chain are two
    streams to authenticate, decompress and write, on two cores), and each part of a full that records where
    each starts as a stream of its own (a file cut between two parts is written by both, at their offsets);
    at most PART_PROCESSES children, each taking the next tar or part not yet taken, largest first.

    The links write disjoint files: an older link only the files the newest index says it holds (each path
    once in that index), the newest everything in its tar, which must then hold none of those (refused if it
    does: one process would overwrite the other's file). The directories of the index are made before the
    fork. Every frame is authenticated before its bytes are written, in each child as in one process; a child
    that fails reports its error, which is raised here (after every child has stopped) with its parts named,
    and the caller removes the partial directory. Files and counts are the parent's `extractor`'s afterwards;
    its sync_all makes them durable. With `patches`, the page deltas are put in as files are written
    (delta_patch); what each child applied (Spool.take_reports) is returned, for delta_patch.finish.
    """
    from apps.databases.engines import tarstream
    from apps.documents import forked as processes

    others = set().union(*(paths for pk, paths in holders.items() if pk != newest.pk))
    units = _units(extractor, links, holders=holders, newest=newest)

    def work(i: int, report) -> dict:
        unit = units[i]
        link, wanted = unit["link"], unit["wanted"]
        child = tarstream.Extractor(extractor.root, owner=extractor._owner, sync=True, rewritten=extractor.rewritten)
        child._made, child.shared = set(extractor._made), set(extractor.shared)
        child.precreate([tarstream.safe_relpath(p) for p in unit["files"]])
        try:
            _extract(child, link=link, parts=unit["parts"], wanted=wanted, ctx=None, report=report,
                     refuse=others if wanted is None and link.pk == newest.pk else None,
                     start=unit["start"], end=unit["end"], patch=None if patches is None else patches.open)
            child.drop_unwritten()
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which raises it)
            child.close()
            return {"error": str(exc) or type(exc).__name__, "chain": isinstance(exc, (ChainError, DeltaError))}
        left = sorted(wanted or ())
        return {"files": child.files, "bytes": child.bytes, "left": len(left), "example": left[0] if left else "",
                "patched": {} if patches is None else patches.take_reports()}

    total = sum(a.size_raw for _, parts, _ in links for a in parts)
    note(ctx, "extracting " + ", ".join(_keys(u["parts"]) for u in units)
         + f" in {min(len(units), PART_PROCESSES)} processes")
    if ctx is not None:
        ctx.progress(0, total, force=True)
    results = processes.run(list(range(len(units))), work, workers=PART_PROCESSES,
                            on_progress=None if ctx is None else (lambda done: ctx.progress(done, total)))
    for unit, got in zip(units, results):  # an error first: a child that failed takes no further part
        if got is not None and "error" in got:
            link, parts = unit["link"], unit["parts"]
            raise (ChainError if got["chain"] else UserError)(f"Restoring backup {link.pk} ({_keys(parts)}) "
                                                             f"failed: {got['error']}")
    for unit, got in zip(units, results):
        link, parts = unit["link"], unit["parts"]
        if got is None:
            raise UserError(f"The process extracting {_keys(parts)} (backup {link.pk}) died; nothing was restored.")
        if got["left"]:
            raise _lacking(link, got["left"], got["example"])
        extractor.files += got["files"]
        extractor.bytes += got["bytes"]
    return [got["patched"] for got in results]


def _extract(extractor, *, link: Backup, parts: list, wanted: set[str] | None, ctx: JobContext | None,
             report=None, refuse: set[str] | None = None, start: dict | None = None,
             end: dict | None = None, patch=None) -> None:
    """Stream one link's tar (the decoded bytes of its `parts`, one after the other, each authenticated and
    checked to its end as a stream of its own) into the directory: all of it (`wanted` None), or only the files in `wanted`
    (each removed from it as written). `report(n)`: called with the size of each raw chunk (a forked child's
    progress). `refuse`: paths this tar must not hold (those another process writes). `start`, `end`: part
    records (tarstream.StreamExtractor) when `parts` are a run of a full's parts that begins or ends inside it.
    `patch`: the page deltas' writer of each file (tarstream.StreamExtractor, delta_patch).

    Three threads, each a few MiB ahead of the next: one reads and authenticates (AES-GCM per frame, the
    stored SHA-256 at the end), one decompresses, this one writes the members (a fourth fsyncs finished
    files). Nothing is written before its frame has been authenticated, and a failure anywhere stops all.
    """
    import itertools

    from apps.databases.engines import tarstream
    from apps.pipeline.readahead import read_ahead

    def select(rel: str, member) -> bool:
        if rel in wanted:
            wanted.discard(rel)
            return True
        return False

    def not_refused(rel: str, member) -> bool:
        if rel in refuse:
            raise ChainError(f"Backup {link.pk} holds {rel}, which its file index says an older backup holds.")
        return True

    stream = itertools.chain.from_iterable(
        artifact_stream(backup=link, artifact=artifact, backend=link._source_backend, hash_raw=False, threaded=True,
                        expected_header=_expected_header(link, artifact))
        for artifact in parts)
    if ctx is not None:
        ctx.progress(0, sum(a.size_raw for a in parts), force=True)
    chunks = read_ahead(stream, name=f"restore-{link.pk}")
    tar = tarstream.StreamExtractor(extractor, select=select if wanted is not None else
                                    not_refused if refuse else None, start=start, end=end, patch=patch)
    try:
        for chunk in ctx.count(chunks) if ctx is not None else chunks:
            tar.feed(chunk)
            if report is not None:
                report(len(chunk))
        tar.close()
    finally:
        tar.abort()
        chunks.close()


def _check_destination(target: Path) -> None:
    if not target.parent.is_dir():
        raise UserError(f"The parent directory of {target} does not exist.")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UserError(f"{target} exists and is not a directory.")
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} is not empty; restore into a new or empty directory.")


def _owner_ids(owner: str | None) -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None  # the files are ours; whoever runs PostgreSQL from them is us
    name = owner or SERVER_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UserError(f"No system user {name!r} to own the restored data directory.") from None
    return entry.pw_uid, entry.pw_gid


def _own(root: Path, uid_gid: tuple[int, int] | None) -> None:
    os.chmod(root, 0o700)
    if uid_gid is None:
        return
    os.chown(root, *uid_gid)
    for dirpath, dirs, _files in os.walk(root):  # files: created owned by the extractor
        for name in dirs:
            os.lchown(os.path.join(dirpath, name), *uid_gid)


def _complete_wal(root: Path, segment_size: int | None) -> None:
    """An incremental stores its last WAL segment only up to the stop LSN: zero-fill it to its full size."""
    if not segment_size:
        return
    from apps.backups.wal_names import is_segment_name

    wal = root / "pg_wal"
    for path in wal.iterdir() if wal.is_dir() else []:
        if is_segment_name(path.name) and path.stat().st_size < segment_size:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, segment_size)
                os.fsync(fd)
            finally:
                os.close(fd)



