#!/usr/bin/env python
"""Upload of one large artifact through our S3 backend (`S3Backend.put_stream`, fed 1 MiB chunks as the backup
pipeline feeds it) vs boto3's own `upload_file` of the same file, to the same moto server on this machine.

Each upload runs in its own child process, so its peak RSS (VmHWM) is its own; the RSS after imports (before
the upload) is reported too: the difference is what the upload itself holds. The object read back is checked
(size, and SHA-256 for ours). Results go to docs/BENCHMARKS.md between this script's markers.

    .venv/bin/python bench/storage_upload.py                 # 1024 MiB and 256 MiB, 2 runs each
    .venv/bin/python bench/storage_upload.py --sizes 64 --repeat 1 --no-write
    .venv/bin/python bench/storage_upload.py --sizes 1024 --repeat 3 --no-write --base /tmp/base-s3   # A/B

The moto server's own CPU seconds per upload are reported too (its /proc stat): on a shared machine they
show the work an upload costs the store, which wall time alone hides.
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/BENCHMARKS.md"
START, END = "<!-- bench/storage_upload.py results: start -->", "<!-- bench/storage_upload.py results: end -->"
BUCKET = "bench"
CREDS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
PART_LABEL = "8 MiB parts, 4 in flight, CRC32 declared"


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads)."""
    t = os.times()
    return t.user + t.system


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of another process (the moto server), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(method: str, endpoint: str, path: str, key: str, code: str = str(ROOT)) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDS)
    if method in ("ours", "base"):  # base: the same code path from another checkout (--base)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
        os.environ.setdefault("DEBUG", "1")
        os.environ.setdefault("SECRET_KEY", "bench")
        sys.path.insert(0, code)
        import django

        django.setup()
        from apps.storage.backends import for_location
        from apps.storage.models import StorageLocation

        creds = Path(tempfile.mkdtemp()) / "aws.json"
        creds.write_text(json.dumps(CREDS))
        store = for_location(StorageLocation(name="bench", kind="s3", bucket=BUCKET, endpoint_url=endpoint,
                                             region="us-east-1", credentials_ref=f"file:{creds}"))
        def chunks():
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk

        store.check()  # the client is built (and its service model loaded) before the clock starts, as for boto3
        before = rss_kib("VmRSS")
        t0, c0 = time.perf_counter(), cpu_seconds()
        store.put_stream(key, chunks())
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    else:
        client.head_bucket(Bucket=BUCKET)  # same warm-up as ours
        before = rss_kib("VmRSS")
        t0, c0 = time.perf_counter(), cpu_seconds()
        client.upload_file(path, BUCKET, key)  # boto3's managed transfer, default TransferConfig
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    head = client.head_object(Bucket=BUCKET, Key=key)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_before_kib": before, "hwm_kib": rss_kib("VmHWM"),
                      "size": head["ContentLength"], "etag": head["ETag"]}))


def run_child(method: str, endpoint: str, path: str, key: str, code: str, server_pid: int) -> dict:
    before = server_cpu(server_pid)
    proc = subprocess.run([sys.executable, __file__, "--child", method, endpoint, path, key, code],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["server_cpu"] = server_cpu(server_pid) - before  # the upload and the client's HEAD after it
    return result


def make_file(directory: Path, mib: int) -> str:
    path = directory / f"artifact-{mib}.bin"
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))  # incompressible, like an encrypted artifact
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1024,256", help="MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    parser.add_argument("--base", help="another checkout (e.g. a worktree of main): its put_stream is run too, "
                        "alternating, as method 'base' (implies --no-write)")
    args = parser.parse_args()
    if args.base:
        args.no_write = True
    methods = ["ours", "sdk"] + (["base"] if args.base else [])
    sys.path.insert(0, str(ROOT))
    from tests.emulators import moto_server  # the same server the tests start

    import boto3

    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    rows, details, etags = [], [], {}
    load_start = os.getloadavg()
    try:
        with moto_server() as (endpoint, server):
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDS)
            client.create_bucket(Bucket=BUCKET)
            for mib in [int(s) for s in args.sizes.split(",")]:
                path = make_file(work, mib)
                results = {m: [] for m in methods}
                for i in range(args.repeat):
                    for method in (methods if i % 2 == 0 else methods[::-1]):
                        key = f"{method}-{mib}-{i}"
                        code = args.base if method == "base" else str(ROOT)
                        r = run_child(method, endpoint, path, key, code, server.pid)
                        assert r["size"] == mib << 20, r
                        etags.setdefault(mib, set()).add(r["etag"])  # same parts, same bytes: one ETag
                        client.delete_object(Bucket=BUCKET, Key=key)  # keep the server's memory down
                        results[method].append(r)
                        details.append(f"{mib} MiB {method}#{i + 1} {r['seconds']:.2f} s (CPU {r['cpu']:.2f} s, "
                                       f"moto {r['server_cpu']:.2f} s) / load {os.getloadavg()[0]:.1f}")
                        print(details[-1], flush=True)
                os.unlink(path)
                assert len(etags[mib]) == 1, etags[mib]
                med = {m: sorted(v, key=lambda r: r["seconds"])[len(v) // 2] for m, v in results.items()}
                labels = {"sdk": "boto3 `upload_file` (default TransferConfig: 8 MiB parts, 10 threads)",
                          "ours": f"`S3Backend.put_stream` ({PART_LABEL})", "base": f"`put_stream` of {args.base}"}
                for method in ("sdk", "ours", "base")[:len(methods)]:
                    r, label = med[method], labels[method]
                    cpu = sorted(x["server_cpu"] for x in results[method])[len(results[method]) // 2]
                    rows.append(f"| {mib} MiB | {label} | {r['seconds']:.2f} | {r['seconds'] / med['sdk']['seconds']:.2f} "
                                f"| {mib / r['seconds']:.0f} | {cpu:.2f} | {r['rss_before_kib'] / 1024:.0f} "
                                f"| {r['hwm_kib'] / 1024:.0f} | {(r['hwm_kib'] - r['rss_before_kib']) / 1024:.0f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    import boto3 as b3
    import moto

    section = "\n".join([
        START,
        f"### Results {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `.venv/bin/python bench/storage_upload.py --sizes {args.sizes} --repeat {args.repeat}`",
        f"- Machine: {os.cpu_count()} CPUs, Linux {platform.release()}; load average at start "
        f"{' / '.join(f'{x:.2f}' for x in load_start)}, at end {' / '.join(f'{x:.2f}' for x in load_end)} "
        "(other work shares the machine)",
        f"- boto3 {b3.__version__}, moto {moto.__version__} (server mode, loopback); code at commit {commit.strip()}",
        f"- Median of {args.repeat} runs per method and size, order alternated; random (incompressible) bytes; "
        "moto CPU: the server's CPU seconds during the run (median); "
        "RSS in MiB: after imports, peak (VmHWM), and peak minus after-imports (what the upload holds).",
        "",
        "| size | method | wall s | × upload_file | MiB/s | moto CPU s | RSS before | peak RSS | upload's own |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "- Runs: " + "; ".join(details) + ".",
        END,
    ])
    print(section)
    if not args.no_write:
        text = DOC.read_text()
        if START in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _m: section, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n## Cloud upload: `S3Backend.put_stream` vs boto3 `upload_file`\n\n" + \
                "Produced by `bench/storage_upload.py` (see bench/README.md); the section between the markers is " \
                "rewritten on every run.\n\n" + section + "\n"
        DOC.write_text(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:7])
    else:
        main()
