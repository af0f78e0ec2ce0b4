"""Document versions read back: verify names damaged files, restores refuse to leave their directory, exports
are plain tar.gz files."""
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from apps.core.services import SYSTEM
from apps.documents import manifest
from apps.documents.chunks import ChunkStore
from apps.documents.jobs import DocumentExportJob, DocumentVerifyJob
from apps.documents.models import DocumentChunk, DocumentPack
from apps.documents.restore import restore_version, write_entries
from apps.documents.verify import verify_version
from apps.pipeline.keys import configured_keyring
from tests.docs_helpers import add_source, backup, make_tree, snapshot, write

pytestmark = pytest.mark.django_db


def _pack_files(version, pack) -> set[str]:
    """Paths of the version's files with a chunk in `pack`."""
    shas = set(DocumentChunk.objects.filter(pack=pack).values_list("sha256", flat=True))
    body = manifest.load(version, keyring=configured_keyring())
    return {e["path"] for e in body["entries"] if e["type"] == "file" and shas & set(e["chunks"])}


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_flipped_byte_in_a_stored_chunk_is_found_by_verify_and_named_by_path(tmp_path, backup_root):
    tree = tmp_path / "tree"
    make_tree(tree)
    write(tree / "reports" / "q3.pdf", os.urandom(100_000))
    version = backup(add_source("docs", tree))
    assert verify_version(version=version)["ok"]
    sha = hashlib.sha256((tree / "reports" / "q3.pdf").read_bytes()).hexdigest()
    pack = DocumentChunk.objects.get(sha256=sha).pack
    _flip(backup_root / pack.key, pack.size_stored // 2)

    job = DocumentVerifyJob.run_now(version=version, actor=SYSTEM)
    assert job.status == "failed"
    result = job.result
    assert "reports/q3.pdf" in result["corrupt"]
    assert set(result["corrupt"]) <= _pack_files(version, pack)  # only files with bytes in the damaged pack
    assert result["missing"] == []
    assert "corrupt" in job.error
    # A restore of the damaged file fails and leaves nothing under its name; other files still restore.
    out = tmp_path / "out"
    res = restore_version(version=version, to=str(out), path="reports/q3.pdf")
    assert [f["path"] for f in res.failed] == ["reports/q3.pdf"] and not (out / "reports" / "q3.pdf").exists()
    assert not list(out.rglob("*.restore-*"))


def test_missing_pack_is_reported_as_missing_files(tmp_path, backup_root):
    tree = tmp_path / "tree"
    make_tree(tree)
    version = backup(add_source("docs", tree))
    pack = DocumentPack.objects.filter(version=version).order_by("-size_stored").first()
    (backup_root / pack.key).unlink()
    result = verify_version(version=version)
    assert not result["ok"]
    assert set(result["missing"]) == _pack_files(version, pack) and result["missing"]


def _forge_manifest(version, entries: list[dict]) -> None:
    """Replace the version's stored manifest (and what the catalog says of it) with one holding `entries`:
    the catalog is trusted, but a restore must not depend on the entries being well-formed."""
    from apps.storage import backends

    data, encoder = manifest.encode({"entries": entries}, compression_name="zstd", keyring=configured_keyring())
    backends.for_location(version.storage_location).put_bytes(version.manifest_key, data)
    st = encoder.stats
    type(version).objects.filter(pk=version.pk).update(
        manifest_sha256_stored=st.sha256_stored, manifest_sha256_raw=st.sha256_raw, manifest_key_id=st.key_id)
    version.refresh_from_db()


def test_malicious_manifest_entries_cannot_write_outside_the_target(tmp_path):
    tree = tmp_path / "tree"
    write(tree / "a.txt", b"payload")
    version = backup(add_source("docs", tree))
    good = manifest.load(version, keyring=configured_keyring())["entries"][0]
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = [
        {**good, "path": "../escaped.txt"},
        {**good, "path": "ok/../../escaped2.txt"},
        {**good, "path": str(outside / "absolute.txt")},
        {**good, "path": "./dot.txt"},
        {"path": "link", "type": "symlink", "target": str(outside)},
        {**good, "path": "link/through-link.txt"},
        {**good, "path": "fine.txt"},
    ]
    _forge_manifest(version, evil)
    target = tmp_path / "target"
    result = restore_version(version=version, to=str(target))
    assert sorted(os.listdir(outside)) == []
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "escaped2.txt").exists()
    refused = {r["path"] for r in result.refused}
    assert {"../escaped.txt", "ok/../../escaped2.txt", str(outside / "absolute.txt"), "./dot.txt"} <= refused
    assert (target / "fine.txt").read_bytes() == b"payload"
    # The file under "link" went into a real directory of the target; the link was then not made over it.
    assert (target / "link").is_dir() and not (target / "link").is_symlink()
    assert not result.ok


def test_existing_link_in_the_target_is_not_followed(tmp_path):
    tree = tmp_path / "tree"
    write(tree / "sub" / "f.txt", b"data")
    version = backup(add_source("docs", tree))
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    result = restore_version(version=version, to=str(target), overwrite=True)
    assert os.listdir(outside) == []
    assert [r["path"] for r in result.refused] == ["sub", "sub/f.txt"]


def test_write_entries_refuses_bad_paths_directly(tmp_path):
    from apps.documents.models import DocumentSource  # noqa: F401 (the store needs a location only)
    from apps.storage.services import ensure_default_location

    root = tmp_path / "root"
    root.mkdir()
    entries = [{"path": p, "type": "file", "chunks": [], "size": 0, "sha256": hashlib.sha256(b"").hexdigest()}
               for p in ["..", "../x", "/etc/x", "a//b", "a\\..\\b", "", "ok.txt"]]
    with ChunkStore(location=ensure_default_location(), keyring=None) as store:
        result = write_entries(entries=entries, root=root, store=store, overwrite=False)
    assert len(result.refused) == 6 and result.files == 1
    assert os.listdir(root) == ["ok.txt"]


def test_export_extracts_with_system_tar_to_the_same_bytes(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "link").symlink_to("big.dat")
    version = backup(add_source("docs", tree))
    archive = tmp_path / "export.tar.gz"
    job = DocumentExportJob.run_now(version=version, to=str(archive), actor=SYSTEM)
    assert job.status == "succeeded", job.error
    out = tmp_path / "extracted"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    assert snapshot(out) == snapshot(tree)
    again = DocumentExportJob.run_now(version=version, to=str(archive), actor=SYSTEM)
    assert again.status == "failed" and "exists" in again.error  # never overwritten
    assert not list(tmp_path.glob("export.tar.gz.partial-*"))


def test_after_verify_finds_a_damaged_pack_the_next_backup_stores_its_chunks_anew(tmp_path, backup_root):
    tree = tmp_path / "tree"
    make_tree(tree)
    source = add_source("docs", tree)
    first = backup(source)
    pack = DocumentPack.objects.filter(version=first).order_by("-size_stored").first()
    (backup_root / pack.key).unlink()
    assert not verify_version(version=first)["ok"]
    (tree / "touch.txt").write_bytes(b"so that a new version is taken")
    second = backup(source)
    assert second.bytes_added >= pack.size_stored // 2  # the lost chunks were stored again
    assert verify_version(version=second)["ok"]
    out = tmp_path / "out"
    assert restore_version(version=second, to=str(out)).ok
    assert snapshot(out) == snapshot(tree)


def test_restore_decodes_each_pack_about_once(tmp_path, monkeypatch):
    """Files changed here and there live in a newer pack, needed all along the restore: that must not make
    the read-ahead decode the older packs again."""
    from apps.documents import chunks as chunks_module
    from apps.documents import packer

    monkeypatch.setattr(packer, "PACK_SIZE", 64 << 10)  # many small packs
    tree = tmp_path / "tree"
    for i in range(300):
        write(tree / f"d{i % 10}" / f"f{i:03d}.bin", os.urandom(4000))
    source = add_source("docs", tree)
    backup(source)
    for i in range(0, 300, 30):
        write(tree / f"d{i % 10}" / f"f{i:03d}.bin", os.urandom(4000))
    version = backup(source)
    decoded = []
    real = chunks_module.ChunkStore.decode_pack
    monkeypatch.setattr(chunks_module.ChunkStore, "decode_pack",
                        lambda self, pack: decoded.append(pack.pk) or real(self, pack))
    out = tmp_path / "out"
    assert restore_version(version=version, to=str(out)).ok
    assert snapshot(out) == snapshot(tree)
    packs = len(set(decoded))
    assert packs >= 10 and len(decoded) <= packs + 3, (len(decoded), packs)
