"""tools/decrypt_artifact.py: the standalone decryptor agrees with the pipeline's Encoder, byte for byte.

Artifacts are made with apps.pipeline.artifact.Encoder; the tool always runs as a separate process
(`sys.executable tools/decrypt_artifact.py ...`), as an operator would run it without the app.
"""
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apps.pipeline.artifact import Encoder
from apps.pipeline.keys import Keyring, generate_spec

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "decrypt_artifact.py"
SPEC = generate_spec("k1")
OTHER_SPEC = generate_spec("k0")
KEYRING = Keyring.parse(SPEC)
SMALL_FRAME = 4096


def raw_data(size: int = 200_000) -> bytes:
    """Part incompressible, part very compressible: several frames whatever the compression."""
    rnd = hashlib.sha256(b"seed").digest()
    noise = b"".join(hashlib.sha256(rnd + i.to_bytes(4, "big")).digest() for i in range(size // 64))
    text = b"".join(b"%d\tlease %d\t2024-01-%02d\n" % (i, i * 7, i % 28 + 1) for i in range(size // 24))
    return noise + bytes(size // 2) + text


def make_artifact(path: Path, raw: bytes, *, compression: str = "zstd", keyring=KEYRING, frame_size=SMALL_FRAME):
    encoder = Encoder(compression_name=compression, keyring=keyring, frame_size=frame_size)
    chunks = [raw[i:i + 10_000] for i in range(0, len(raw), 10_000)]
    with open(path, "wb") as fh:
        for piece in encoder.encode(chunks):
            fh.write(piece)
    return encoder.stats


def tool_env(**extra) -> dict:
    """The test process's environment without the app's keys (pytest-env sets them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("BACKUP_ENCRYPTION_KEYS", "BACKUP_ENCRYPTION_KEYS_FILE")}
    env.update(extra)
    return env


def run_tool(*args, env=None, stdin=None, input_bytes=None):
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)], env=env if env is not None else tool_env(),
        stdin=stdin, input=input_bytes, capture_output=True, timeout=120,
    )


def assert_failed(proc, *fragments):
    assert proc.returncode != 0, proc.stderr
    err = proc.stderr.decode()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("decrypt_artifact: error:"), err
    for fragment in fragments:
        assert fragment in err, err
    for spec in (SPEC, OTHER_SPEC):
        assert spec.split(":", 1)[1] not in err + proc.stdout.decode(errors="replace")  # keys never printed
    return err


@pytest.fixture
def zstd_blocked(tmp_path):
    """PYTHONPATH entry whose `zstandard` refuses to import: the tool must fall back to the zstd program."""
    blocker = tmp_path / "block-zstandard"
    blocker.mkdir()
    (blocker / "zstandard.py").write_text("raise ImportError('zstandard is blocked for this test')\n")
    return blocker


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("encrypted", [True, False], ids=["aead", "plain"])
def test_round_trip_is_byte_identical(tmp_path, compression, encrypted):
    raw = raw_data()
    art = tmp_path / "dump.pgc.art"
    stats = make_artifact(art, raw, compression=compression, keyring=KEYRING if encrypted else None)
    assert stats.frames > 3  # really multi-frame
    out = tmp_path / "out.bin"
    keys = ["--keys", SPEC] if encrypted else []  # keys given: an unencrypted artifact is refused
    proc = run_tool(art, "-o", out, *keys, "--expect-sha256", stats.sha256_stored)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert out.read_bytes() == raw
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_stdout_and_stdin(tmp_path, compression):
    raw = raw_data(50_000)
    art = tmp_path / "a.art"
    make_artifact(art, raw, compression=compression)
    proc = run_tool(art, "--keys", SPEC)  # stdout is the default output
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == raw
    with open(art, "rb") as fh:
        proc = run_tool("-", "-o", "-", "--keys", SPEC, stdin=fh)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == raw


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_empty_stream(tmp_path, compression):
    art = tmp_path / "empty.art"
    make_artifact(art, b"", compression=compression)
    proc = run_tool(art, "--keys", SPEC)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""


def test_default_frame_size_and_frame_boundaries(tmp_path):
    # "none" with a raw size that is an exact multiple of the frame size: the final frame is empty.
    raw = raw_data(40_000)[: 8 * 1024]
    art = tmp_path / "exact.art"
    stats = make_artifact(art, raw, compression="none", frame_size=1024)
    assert stats.frames == 9
    assert run_tool(art, "--keys", SPEC).stdout == raw
    big = raw_data(3_000_000)
    make_artifact(art, big, compression="zstd", frame_size=1 << 20)
    proc = run_tool(art, "--keys", SPEC)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == big


def test_keys_from_environment_and_rotation(tmp_path):
    raw = raw_data(30_000)
    art = tmp_path / "a.art"
    make_artifact(art, raw, keyring=Keyring.parse(OTHER_SPEC))  # written under the old key k0
    rotated = f"{generate_spec('k2')},{SPEC},{OTHER_SPEC}"  # k2 is current now; k0 is kept for reading
    proc = run_tool(art, env=tool_env(BACKUP_ENCRYPTION_KEYS=rotated))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == raw
    key_file = tmp_path / "keys"
    key_file.write_text(rotated + "\n")
    proc = run_tool(art, env=tool_env(BACKUP_ENCRYPTION_KEYS_FILE=str(key_file), BACKUP_ENCRYPTION_KEYS="junk"))
    assert proc.returncode == 0, proc.stderr  # the _FILE variant wins, as in the app's settings
    assert proc.stdout == raw
    proc = run_tool(art, "--keys-file", key_file)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == raw


def test_manifest_supplies_expected_checksum(tmp_path):
    raw = raw_data(30_000)
    art = tmp_path / "dump.pgc.zst.aead"
    stats = make_artifact(art, raw)
    manifest = tmp_path / "manifest.json"
    entry = {"name": "dump.pgc", "key": "targets/sample/backups/X/dump.pgc.zst.aead", **stats.as_manifest()}
    manifest.write_text(json.dumps({"manifest_version": 1, "artifacts": [entry]}))
    proc = run_tool(art, "--keys", SPEC, "--manifest", manifest, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_bytes() == raw
    entry["sha256_stored"] = "0" * 64
    manifest.write_text(json.dumps({"manifest_version": 1, "artifacts": [entry]}))
    proc = run_tool(art, "--keys", SPEC, "--manifest", manifest, "-o", tmp_path / "out2")
    assert_failed(proc, "SHA-256 mismatch")
    assert not (tmp_path / "out2").exists()


def test_tool_is_standalone():
    """Only the standard library, cryptography and (optionally) zstandard: never django or apps."""
    tree = ast.parse(TOOL.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= {"cryptography", "zstandard"}, third_party


def test_unencrypted_gzip_needs_only_stdlib(tmp_path):
    """`python -S` skips site-packages: no cryptography, no zstandard, still decodes gzip and none."""
    raw = raw_data(30_000)
    for compression in ("gzip", "none"):
        art = tmp_path / f"{compression}.art"
        make_artifact(art, raw, compression=compression, keyring=None)
        proc = subprocess.run([sys.executable, "-S", str(TOOL), str(art)], env=tool_env(), capture_output=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == raw


# --- zstd through the zstd program -----------------------------------------------------------------


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd program is not installed")
@pytest.mark.parametrize("encrypted", [True, False], ids=["aead", "plain"])
def test_zstd_program_fallback(tmp_path, zstd_blocked, encrypted):
    raw = raw_data()
    art = tmp_path / "a.art"
    stats = make_artifact(art, raw, keyring=KEYRING if encrypted else None)
    env = tool_env(PYTHONPATH=str(zstd_blocked))
    out = tmp_path / "out"
    keys = ["--keys", SPEC] if encrypted else []  # keys given: an unencrypted artifact is refused
    proc = run_tool(art, "-o", out, *keys, "-v", "--expect-sha256", stats.sha256_stored, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "using the zstd program" in proc.stderr.decode()
    assert out.read_bytes() == raw
    proc = run_tool(art, *keys, env=env)  # to stdout
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == raw


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd program is not installed")
def test_zstd_program_reports_corrupt_stream(tmp_path, zstd_blocked):
    # Unencrypted, so a flipped byte inside the compressed data reaches the zstd program itself.
    raw = raw_data()
    art = tmp_path / "a.art"
    make_artifact(art, raw, keyring=None, frame_size=1 << 20)
    data = bytearray(art.read_bytes())
    data[-40] ^= 0xFF
    art.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = run_tool(art, "-o", out, env=tool_env(PYTHONPATH=str(zstd_blocked)))
    assert_failed(proc, "zstd program failed")
    assert not out.exists()
    proc = run_tool(art, "-o", out)  # and through the module
    assert_failed(proc, "zstd stream is corrupt")
    assert not out.exists()


def test_zstd_without_module_or_program(tmp_path, zstd_blocked):
    art = tmp_path / "a.art"
    make_artifact(art, b"x" * 1000)
    empty_path = tmp_path / "no-programs"
    empty_path.mkdir()
    proc = run_tool(art, "--keys", SPEC, env=tool_env(PYTHONPATH=str(zstd_blocked), PATH=str(empty_path)))
    assert_failed(proc, "zstandard", "zstd")


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("where", ["header", "first-frame", "middle", "last-byte"])
def test_flipped_byte_is_rejected(tmp_path, compression, where):
    raw = raw_data()
    art = tmp_path / "a.art"
    stats = make_artifact(art, raw, compression=compression)
    data = bytearray(art.read_bytes())
    header_len = 12 + int.from_bytes(data[8:12], "big")
    pos = {"header": header_len - 3, "first-frame": header_len + 10, "middle": len(data) // 2,
           "last-byte": len(data) - 1}[where]
    data[pos] ^= 0x01
    art.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = run_tool(art, "-o", out, "--keys", SPEC)
    assert_failed(proc)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.art"]  # no partial output left behind
    assert stats.sha256_stored  # (and the stored checksum would have caught it too)


def test_flipped_byte_in_unencrypted_artifact_fails_checksum(tmp_path):
    raw = raw_data()
    art = tmp_path / "a.art"
    stats = make_artifact(art, raw, compression="none", keyring=None)
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x01  # payload byte of an unauthenticated frame: decodes, but to the wrong bytes
    art.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = run_tool(art, "-o", out, "--expect-sha256", stats.sha256_stored)
    assert_failed(proc, "SHA-256 mismatch")
    assert not out.exists()


@pytest.mark.parametrize("encrypted", [True, False], ids=["aead", "plain"])
@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_truncation_is_rejected(tmp_path, encrypted, compression):
    raw = raw_data()
    art = tmp_path / "a.art"
    make_artifact(art, raw, compression=compression, keyring=KEYRING if encrypted else None)
    full = art.read_bytes()
    # The last frame's start: walk the frame headers.
    pos = 12 + int.from_bytes(full[8:12], "big")
    header_end = pos
    starts = []
    while pos < len(full):
        starts.append(pos)
        pos += 5 + int.from_bytes(full[pos + 1:pos + 5], "big")
    assert pos == len(full) and full[starts[-1]] == 1 and all(full[s] == 0 for s in starts[:-1])
    cuts = {
        "in the magic": 5,
        "in the header": header_end - 1,
        "right after the header": header_end,
        "at a frame boundary": starts[len(starts) // 2],
        "before the final frame": starts[-1],
        "in the final frame": len(full) - 1,
    }
    keys = ["--keys", SPEC] if encrypted else []  # keys given: an unencrypted artifact is refused
    for label, cut in cuts.items():
        art.write_bytes(full[:cut])
        proc = run_tool(art, *keys)
        assert_failed(proc), label
        if cut >= header_end:
            assert "truncated" in proc.stderr.decode(), (label, proc.stderr)


def test_trailing_bytes_are_rejected(tmp_path):
    art = tmp_path / "a.art"
    make_artifact(art, raw_data(20_000))
    with open(art, "ab") as fh:
        fh.write(b"\0")
    proc = run_tool(art, "--keys", SPEC)
    assert_failed(proc, "after the final frame")


def test_wrong_key_material(tmp_path):
    art = tmp_path / "a.art"
    make_artifact(art, raw_data(20_000))
    impostor = generate_spec("k1")  # same id, other bytes
    out = tmp_path / "out"
    proc = run_tool(art, "-o", out, "--keys", impostor)
    err = assert_failed(proc, "'k1'", "does not unwrap")
    assert impostor.split(":", 1)[1] not in err
    assert not out.exists()


def test_missing_key_id_is_named(tmp_path):
    art = tmp_path / "a.art"
    make_artifact(art, raw_data(20_000))
    proc = run_tool(art, "--keys", OTHER_SPEC)
    assert_failed(proc, "'k1'", "not among the keys")
    proc = run_tool(art)  # no keys anywhere
    assert_failed(proc, "'k1'", "no keys were given")


@pytest.mark.parametrize("spec, message", [
    ("k1", "keyid:base64"),
    ("k1:not-base64!", "not valid base64"),
    ("k1:" + "QUJD", "32 bytes"),
    (f"{SPEC},{SPEC}", "listed twice"),
])
def test_malformed_key_spec(tmp_path, spec, message):
    art = tmp_path / "a.art"
    make_artifact(art, raw_data(5_000))
    assert_failed(run_tool(art, "--keys", spec), message)


def test_expect_sha256_mismatch(tmp_path):
    raw = raw_data(20_000)
    art = tmp_path / "a.art"
    stats = make_artifact(art, raw)
    out = tmp_path / "out"
    proc = run_tool(art, "-o", out, "--keys", SPEC, "--expect-sha256", "ab" * 32)
    assert_failed(proc, "SHA-256 mismatch", stats.sha256_stored)
    assert not out.exists()
    proc = run_tool(art, "-o", out, "--keys", SPEC, "--expect-sha256", stats.sha256_stored.upper())
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == raw
    assert_failed(run_tool(art, "--keys", SPEC, "--expect-sha256", "xyz"), "64 hexadecimal")


def test_not_an_artifact(tmp_path):
    art = tmp_path / "junk"
    art.write_bytes(b"PGDMP\x01\x0e\x00" + b"\0" * 100)
    assert_failed(run_tool(art), "bad magic")
    assert_failed(run_tool(tmp_path / "missing"), "cannot read")


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_db_backup_artifact_decrypts_and_lists(target, backup_root, settings, tmp_path):
    from django.core.management import call_command

    from apps.databases.pgtools import pg_bin

    call_command("db_backup", "sample")
    manifests = list(backup_root.rglob("manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    (entry,) = manifest["artifacts"]
    artifact = backup_root / entry["key"]
    assert artifact.is_file() and entry["cipher"] == "aes-256-gcm"
    assert entry["key_id"] == Keyring.parse(settings.BACKUP_ENCRYPTION_KEYS).current_id

    out = tmp_path / "dump.pgc"
    proc = run_tool(artifact, "-o", out, "--keys", settings.BACKUP_ENCRYPTION_KEYS, "--manifest", manifests[0])
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size == entry["size_raw"]
    assert hashlib.sha256(out.read_bytes()).hexdigest() == entry["sha256_raw"]
    listing = subprocess.run([pg_bin("pg_restore"), "--list", str(out)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert any(" TABLE " in line and " leases " in line for line in listing.stdout.splitlines()), listing.stdout

    # The documented pipe, with a consumer that reads the whole archive: decrypt_artifact.py ARTIFACT | pg_restore
    env = tool_env(BACKUP_ENCRYPTION_KEYS=settings.BACKUP_ENCRYPTION_KEYS)
    tool = subprocess.Popen([sys.executable, str(TOOL), str(artifact)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    script = subprocess.run([pg_bin("pg_restore"), "--file=-"], stdin=tool.stdout, capture_output=True, text=True)
    tool.stdout.close()
    assert tool.wait() == 0, tool.stderr.read()
    tool.stderr.close()
    assert script.returncode == 0, script.stderr
    assert "CREATE TABLE public.leases" in script.stdout
    assert "COPY public.leases" in script.stdout


def test_reader_that_stops_early_is_reported(tmp_path):
    """A consumer that closes the pipe before the end (e.g. `pg_restore --list` reads only the TOC) leaves
    the rest unauthenticated: the tool says so with a non-zero status instead of pretending success."""
    art = tmp_path / "a.art"
    make_artifact(art, raw_data(3_000_000), frame_size=1 << 16)
    tool = subprocess.Popen([sys.executable, str(TOOL), str(art), "--keys", SPEC], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=tool_env())
    tool.stdout.read(10)
    tool.stdout.close()
    rc = tool.wait(timeout=60)
    err = tool.stderr.read().decode()
    tool.stderr.close()
    assert rc != 0
    assert err.strip().splitlines() == ["decrypt_artifact: error: the output was closed before the artifact was "
                                        "fully written"]
