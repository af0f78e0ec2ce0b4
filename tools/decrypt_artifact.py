#!/usr/bin/env python3
"""Decrypt and decompress one backup artifact without the backup application.

    python tools/decrypt_artifact.py ARTIFACT [-o OUT|-] [--keys SPEC | --keys-file FILE]
                                     [--expect-sha256 HEX | --manifest manifest.json] [-v]

    python tools/decrypt_artifact.py dump.pgc.zst.aead --keys-file /secure/keys | pg_restore --list

The format is specified in docs/FORMAT.md. This script needs only the Python
standard library, `cryptography` (encrypted artifacts only), and for zstd either
the `zstandard` module or the `zstd` program. It never imports the application.

Master keys come from --keys / --keys-file, otherwise from the environment:
BACKUP_ENCRYPTION_KEYS_FILE (a file holding the spec), then BACKUP_ENCRYPTION_KEYS.
The spec is "keyid:base64-of-32-bytes,keyid:base64,...". Keys are never printed.

It streams: one frame at a time is held in memory, and the output is written as
it is produced. Every frame is authenticated before its bytes are used; a
missing final frame, bytes after it, a bad frame, a wrong key or a checksum
mismatch ends the run with a non-zero status and one line on stderr. With
-o FILE the output is written to a temporary name beside FILE and renamed only
once everything has been checked, so a failed run leaves no FILE behind. On
stdout (the default, or -o -) bytes already written cannot be taken back: the
non-zero exit status is the signal (use `set -o pipefail` in shells).

An unencrypted artifact is refused when keys are given (from the options or the
environment): nothing in it can be authenticated, so it may be a downgraded or
swapped file. With --manifest, a header whose cipher, compression or key id
differs from the manifest's entry is refused before any output.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zlib

MAGIC = b"PGBRART1"
FORMAT_VERSION = 1
MAX_HEADER = 1 << 20
MAX_FRAME = 64 << 20
TAG_LEN = 16
FLAG_MORE, FLAG_FINAL = 0, 1
FRAME_HEAD = struct.Struct(">BI")
WRAP_AAD_PREFIX = b"pgbr-data-key:"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
OUT_CHUNK = 1 << 20  # largest piece handed to the output at once (gzip)
ZSTD_FEED = 256  # compressed bytes per zstandard call: caps one call's output near 8 MiB
PROG = "decrypt_artifact"


class Fail(Exception):
    """Anything that must stop the run; the message is the one line printed."""


# --- keys ---------------------------------------------------------------------------------------


def parse_keys(spec: str) -> dict[str, bytes]:
    """"keyid:base64,keyid:base64" -> {keyid: 32 bytes}; messages name key ids, never key material."""
    keys: dict[str, bytes] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, b64 = item.partition(":")
        if not sep or not KEY_ID_RE.match(key_id):
            raise Fail("the key spec must be a comma list of keyid:base64-32-bytes")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise Fail(f"master key {key_id!r} is not valid base64") from None
        if len(raw) != 32:
            raise Fail(f"master key {key_id!r} must decode to 32 bytes, not {len(raw)}")
        if key_id in keys:
            raise Fail(f"master key id {key_id!r} is listed twice")
        keys[key_id] = raw
    return keys


def key_spec(args) -> tuple[str, str]:
    """(spec, where it came from)."""
    if args.keys is not None:
        return args.keys, "--keys"
    if args.keys_file:
        return _read_key_file(args.keys_file), "--keys-file"
    path = os.environ.get("BACKUP_ENCRYPTION_KEYS_FILE", "")
    if path:
        return _read_key_file(path), "BACKUP_ENCRYPTION_KEYS_FILE"
    return os.environ.get("BACKUP_ENCRYPTION_KEYS", ""), "BACKUP_ENCRYPTION_KEYS"


def _read_key_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise Fail(f"cannot read the key file {path}: {exc.strerror or exc}") from None


def data_key(header: dict, keys: dict[str, bytes], source: str) -> bytes:
    """Unwrap the artifact's data key with the master key its header names."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise Fail("this artifact is encrypted: install the 'cryptography' package") from None
    key_id = header.get("key_id")
    if not isinstance(key_id, str) or not key_id:
        raise Fail("the artifact header names no key_id")
    if not keys:
        raise Fail(f"the artifact is encrypted with master key {key_id!r} but no keys were given "
                   "(--keys, --keys-file, BACKUP_ENCRYPTION_KEYS or BACKUP_ENCRYPTION_KEYS_FILE)")
    if key_id not in keys:
        raise Fail(f"master key {key_id!r} is not among the keys given ({source}); add it to read this artifact")
    wrapped = _b64(header, "wrapped_key")
    if len(wrapped) != 12 + 32 + TAG_LEN:
        raise Fail("the artifact header's wrapped_key has the wrong length")
    try:
        key = AESGCM(keys[key_id]).decrypt(wrapped[:12], wrapped[12:], WRAP_AAD_PREFIX + key_id.encode())
    except InvalidTag:
        raise Fail(f"the data key does not unwrap with master key {key_id!r} (wrong key material?)") from None
    return key


def _b64(header: dict, name: str) -> bytes:
    value = header.get(name)
    try:
        return base64.b64decode(value, validate=True)
    except (TypeError, binascii.Error, ValueError):
        raise Fail(f"the artifact header's {name} is not valid base64") from None


# --- input --------------------------------------------------------------------------------------


class HashingReader:
    """Exact reads from a binary file, hashing every byte consumed."""

    def __init__(self, fh):
        self.fh = fh
        self.hash = hashlib.sha256()
        self.consumed = 0

    def read(self, n: int) -> bytes:
        parts, want = [], n
        while want:
            chunk = self.fh.read(want)
            if not chunk:
                break
            parts.append(chunk)
            want -= len(chunk)
        data = b"".join(parts)
        self.hash.update(data)
        self.consumed += len(data)
        return data


def read_header(reader: HashingReader) -> tuple[dict, bytes]:
    magic = reader.read(len(MAGIC))
    if magic != MAGIC:
        raise Fail("not a backup artifact (bad magic bytes)")
    raw_len = reader.read(4)
    if len(raw_len) != 4:
        raise Fail("the artifact header is truncated")
    (length,) = struct.unpack(">I", raw_len)
    if length > MAX_HEADER:
        raise Fail("the artifact header is implausibly large")
    body = reader.read(length)
    if len(body) != length:
        raise Fail("the artifact header is truncated")
    try:
        header = json.loads(body)
    except ValueError:
        raise Fail("the artifact header is not valid JSON") from None
    if not isinstance(header, dict):
        raise Fail("the artifact header is not a JSON object")
    if header.get("format") != FORMAT_VERSION:
        raise Fail(f"unsupported artifact format {header.get('format')!r}")
    return header, magic + raw_len + body


def frames(reader: HashingReader, header: dict, header_bytes: bytes, key: bytes | None):
    """Yield each frame's plaintext payload, authenticated; stop after the final frame."""
    aead = prefix = None
    if key is not None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead = AESGCM(key)
        prefix = _b64(header, "nonce_prefix")
        if len(prefix) != 4:
            raise Fail("the artifact header's nonce_prefix is not 4 bytes")
    digest = hashlib.sha256(header_bytes).digest()
    counter = 0
    while True:
        head = reader.read(FRAME_HEAD.size)
        if len(head) < FRAME_HEAD.size:
            raise Fail("the artifact is truncated: the final frame is missing")
        flag, length = FRAME_HEAD.unpack(head)
        if flag not in (FLAG_MORE, FLAG_FINAL) or length > MAX_FRAME:
            raise Fail(f"frame {counter} has a corrupt header")
        payload = reader.read(length)
        if len(payload) != length:
            raise Fail(f"the artifact is truncated inside frame {counter}")
        if aead is not None:
            ctr = counter.to_bytes(8, "big")
            try:
                payload = aead.decrypt(prefix + ctr, payload, digest + ctr + bytes([flag]))
            except InvalidTag:
                raise Fail(f"frame {counter} fails authentication: the artifact is corrupt or altered") from None
        counter += 1
        yield payload
        if flag == FLAG_FINAL:
            break
    if reader.read(1):
        raise Fail("unexpected bytes after the final frame")


# --- decompression sinks --------------------------------------------------------------------------
# Each sink takes payloads with write() and must be finished with close(), which raises if the
# compressed stream did not end cleanly.


class PlainSink:
    def __init__(self, out):
        self.out = out

    def write(self, data: bytes) -> None:
        if data:
            self.out.write(data)

    def close(self) -> None:
        pass


class GzipSink:
    """gzip container (zlib wbits 31); output handed on in pieces of at most OUT_CHUNK bytes."""

    def __init__(self, out):
        self.out = out
        self.d = zlib.decompressobj(31)

    def write(self, data: bytes) -> None:
        while True:
            if self.d.eof:  # a further gzip member follows, as `gzip -d` accepts; or nothing more
                data = self.d.unused_data + data
                if not data:
                    return
                self.d = zlib.decompressobj(31)
            try:
                raw = self.d.decompress(data, OUT_CHUNK)
            except zlib.error as exc:
                raise Fail(f"the gzip stream is corrupt: {exc}") from None
            if raw:
                self.out.write(raw)
            data = self.d.unconsumed_tail
            if not data and not raw and not self.d.eof:
                return  # input consumed, no output pending

    def close(self) -> None:
        if not self.d.eof:
            raise Fail("the gzip stream ends early (incomplete member)")


class ZstdModuleSink:
    """zstd through the `zstandard` module, fed in small slices so that one call's output stays bounded
    (zstd expands at most ~32768:1, so 256 input bytes give at most ~8 MiB)."""

    def __init__(self, out, zstandard):
        self.out = out
        self.zstandard = zstandard
        self.d = zstandard.ZstdDecompressor().decompressobj()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        for i in range(0, len(view), ZSTD_FEED):
            piece = view[i:i + ZSTD_FEED]
            while piece:
                if self.d.eof:  # concatenated frames decode as one stream, as the zstd program does
                    self.d = self.zstandard.ZstdDecompressor().decompressobj()
                try:
                    raw = self.d.decompress(piece)
                except self.zstandard.ZstdError as exc:
                    raise Fail(f"the zstd stream is corrupt: {exc}") from None
                if raw:
                    self.out.write(raw)
                piece = self.d.unused_data if self.d.eof else b""

    def close(self) -> None:
        if not self.d.eof:
            raise Fail("the zstd stream ends early (incomplete frame)")


class ZstdProgramSink:
    """zstd through the `zstd` program: we write its stdin, its stdout goes straight to the output."""

    def __init__(self, out, program: str):
        out.flush()
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [program, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=out.fileno(), stderr=self.err,
        )

    def write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:  # zstd stopped reading: it has an error to report
            self.close()
            raise Fail("the zstd program stopped early")

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        rc = self.proc.wait()
        if rc != 0:
            self.err.seek(0)
            lines = [ln.strip() for ln in self.err.read().decode(errors="replace").splitlines() if ln.strip()]
            raise Fail(f"the zstd program failed (status {rc}): {lines[-1] if lines else 'no message'}")

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def make_sink(compression: str, out, note):
    if compression == "none":
        return PlainSink(out)
    if compression == "gzip":
        return GzipSink(out)
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            zstandard = None
        if zstandard is not None:
            note("zstd: using the zstandard module")
            return ZstdModuleSink(out, zstandard)
        program = shutil.which("zstd")
        if program is None:
            raise Fail("zstd decompression needs the 'zstandard' Python module or the 'zstd' program")
        note(f"zstd: using the zstd program ({program})")
        return ZstdProgramSink(out, program)
    raise Fail(f"unknown compression {compression!r}")


# --- expected checksum ------------------------------------------------------------------------------


def expected_from_manifest(path: str, artifact_path: str) -> tuple[str, int | None, dict]:
    """(sha256_stored, size_stored, {cipher, compression, key_id} the header must have) of the artifact."""
    try:
        with open(path, "rb") as fh:
            manifest = json.load(fh)
    except OSError as exc:
        raise Fail(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise Fail(f"the manifest {path} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != 1:
        raise Fail(f"unsupported manifest version in {path}")
    artifacts = [a for a in manifest.get("artifacts") or [] if isinstance(a, dict)]
    base = os.path.basename(artifact_path)
    matches = [a for a in artifacts if str(a.get("key", "")).rsplit("/", 1)[-1] == base]
    if not matches and len(artifacts) == 1:
        matches = artifacts
    if len(matches) != 1:
        raise Fail(f"the manifest does not identify one artifact named {base!r}")
    sha = str(matches[0].get("sha256_stored", "")).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise Fail(f"the manifest records no valid sha256_stored for {base!r}")
    size = matches[0].get("size_stored")
    header = {name: matches[0][name] for name in ("cipher", "compression", "key_id") if name in matches[0]}
    return sha, size if isinstance(size, int) else None, header


def check_header(header: dict, expected: dict) -> None:
    """Refuse a header whose cipher, compression or key id differs from the manifest's (swapped or downgraded)."""
    found = {"cipher": header.get("cipher", "none"), "compression": header.get("compression", "none"),
             "key_id": header.get("key_id", "")}
    for name, value in expected.items():
        if found[name] != (value or ""):
            raise Fail(f"the artifact header says {name} {found[name]!r} but the manifest says {value!r}")


def normalise_hex(value: str) -> str:
    value = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise Fail("an expected SHA-256 must be 64 hexadecimal digits")
    return value


# --- main -----------------------------------------------------------------------------------------


class Output:
    """stdout, or a file written under a temporary name and renamed into place on success."""

    def __init__(self, target: str):
        self.target, self.tmp = target, None
        if target == "-":
            self.fh = sys.stdout.buffer
            return
        try:
            special = os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode)
            if special:  # /dev/null, a FIFO...: write in place, nothing to rename
                self.fh = open(target, "wb")
            else:
                directory = os.path.dirname(os.path.abspath(target))
                fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".partial",
                                                dir=directory)
                self.fh = os.fdopen(fd, "wb")
        except OSError as exc:
            raise Fail(f"cannot write {target}: {exc.strerror or exc}") from None

    def commit(self) -> None:
        self.fh.flush()
        if self.tmp is not None:
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.target)
            self.tmp = None
        elif self.target != "-":
            self.fh.close()

    def discard(self) -> None:
        if self.tmp is not None:
            try:
                self.fh.close()
            finally:
                os.unlink(self.tmp)
            self.tmp = None


def run(args) -> dict:
    note = (lambda msg: print(f"{PROG}: {msg}", file=sys.stderr)) if args.verbose else (lambda msg: None)
    expected, expected_size, expected_header = None, None, {}
    if args.expect_sha256:
        expected = normalise_hex(args.expect_sha256)
    if args.manifest:
        sha, expected_size, expected_header = expected_from_manifest(args.manifest, args.artifact)
        sha = normalise_hex(sha)
        if expected is not None and expected != sha:
            raise Fail("--expect-sha256 and the manifest disagree on the expected SHA-256")
        expected = sha

    try:
        infile = sys.stdin.buffer if args.artifact == "-" else open(args.artifact, "rb")
    except OSError as exc:
        raise Fail(f"cannot read {args.artifact}: {exc.strerror or exc}") from None
    with infile:
        reader = HashingReader(infile)
        header, header_bytes = read_header(reader)
        compression = header.get("compression", "none")
        cipher = header.get("cipher", "none")
        note(f"format {header['format']}, compression {compression}, cipher {cipher}"
             + (f", master key {header.get('key_id')!r}" if cipher != "none" else ""))
        check_header(header, expected_header)
        spec, source = key_spec(args)
        keys = parse_keys(spec)
        if cipher == "aes-256-gcm":
            key = data_key(header, keys, source)
        elif cipher == "none":
            if keys:  # an artifact with keys around is meant to be encrypted: this one may have been swapped
                raise Fail(f"the artifact is not encrypted, so nothing in it can be authenticated, and keys were "
                           f"given ({source}); to read it anyway, give no keys and check it with --manifest "
                           "or --expect-sha256")
            key = None
        else:
            raise Fail(f"unknown cipher {cipher!r}")
        if compression not in ("none", "gzip", "zstd"):
            raise Fail(f"unknown compression {compression!r}")

        out = Output(args.output)
        sink = None
        try:
            sink = make_sink(compression, out.fh, note)
            count = 0
            for payload in frames(reader, header, header_bytes, key):
                sink.write(payload)
                count += 1
            sink.close()
            digest = reader.hash.hexdigest()
            if expected is not None and digest != expected:
                raise Fail(f"SHA-256 mismatch: the artifact hashes to {digest}, expected {expected}")
            if expected_size is not None and reader.consumed != expected_size:
                raise Fail(f"size mismatch: the artifact is {reader.consumed} bytes, the manifest says {expected_size}")
            out.commit()
        except BaseException:
            if isinstance(sink, ZstdProgramSink):
                sink.abort()
            out.discard()
            raise
    note(f"ok: {count} frames, {reader.consumed} stored bytes, sha256 {digest}"
         + (" (matches)" if expected else ""))
    return {"frames": count, "size_stored": reader.consumed, "sha256_stored": digest}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="decrypt_artifact.py",
        description="Authenticate, decrypt and decompress a backup artifact (see docs/FORMAT.md).",
    )
    parser.add_argument("artifact", metavar="ARTIFACT_PATH", help="the stored artifact ('-' reads stdin)")
    parser.add_argument("-o", "--output", default="-", metavar="OUT", help="output file, or '-' for stdout (default)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--keys", metavar="SPEC", help='master keys "keyid:base64,..." (visible in ps: prefer a file)')
    keys.add_argument("--keys-file", metavar="FILE", help="file holding the master key spec")
    parser.add_argument("--expect-sha256", metavar="HEX", help="SHA-256 the stored bytes must have")
    parser.add_argument("--manifest", metavar="FILE", help="manifest.json to take the expected SHA-256 and size from")
    parser.add_argument("-v", "--verbose", action="store_true", help="describe the artifact on stderr")
    args = parser.parse_args(argv)
    try:
        run(args)
    except Fail as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our stdout went away; keep the interpreter's final flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"{PROG}: error: the output was closed before the artifact was fully written", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
