"""Helpers of the document backup tests: trees to back up, snapshots to compare restores with."""
import hashlib
import os
import random
from pathlib import Path

from apps.core.services import SYSTEM


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_tree(root: Path, *, files: int = 40, seed: int = 1) -> None:
    """Small text files, random binaries and one file large enough for several chunks."""
    rnd = random.Random(seed)
    for i in range(files):
        sub = root / f"dir{i % 4}" / ("deep" if i % 3 == 0 else "")
        if i % 2:
            data = (f"document {i} " * rnd.randint(10, 400)).encode()
        else:
            data = rnd.randbytes(rnd.randint(0, 30_000))
        write(sub / f"file{i}.bin", data)
    write(root / "big.dat", rnd.randbytes(3 << 20) + b"tail" * 1000)
    (root / "empty-dir").mkdir(exist_ok=True)


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 (files), "dir" (directories), "-> target" (links)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def add_source(name: str, root: Path, **fields):
    from apps.documents.models import DocumentSource
    from apps.documents.services import save_source

    return save_source(source=DocumentSource(name=name, root_path=str(root), **fields), actor=SYSTEM)


def backup(source):
    """Run a backup now; returns the version (whatever its status)."""
    from apps.documents.jobs import DocumentBackupJob
    from apps.documents.models import DocumentVersion

    job = DocumentBackupJob.run_now(source=source, actor=SYSTEM)
    return DocumentVersion.objects.select_related("source", "storage_location").get(pk=job.args["version_id"])
