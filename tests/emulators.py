"""Local emulators of the cloud stores, one server each per test session: moto (S3), Azurite (Azure Blob),
gcp-storage-emulator (GCS). Each is a subprocess on a free loopback port, stopped at the end of the session
(the machines' PID 1 does not reap orphans, so a server must never outlive its session).

`cloud_location(kind, ...)` makes a StorageLocation on a fresh bucket/container of that emulator, with its
credentials in a file named by `credentials_ref` (as an operator would set it up).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from apps.databases.clusters import free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
AZURITE = Path(os.environ.get("AZURITE_BLOB", ROOT / ".tools/azurite/node_modules/.bin/azurite-blob"))
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
KINDS = ["local", "s3", "azure", "gcs"]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


@contextmanager
def server(cmd: list[str], port: int, what: str):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc, what)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def moto_server(port: int | None = None):
    port = port or free_port()
    with server([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server") as proc:
        yield f"http://127.0.0.1:{port}", proc


@pytest.fixture(scope="session")
def creds_dir():
    d = Path(tempfile.mkdtemp(prefix="cloud-creds-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_emulator(creds_dir):
    creds = creds_dir / "aws.json"
    creds.write_text(json.dumps({"aws_access_key_id": "testing-key-id", "aws_secret_access_key": "testing-secret"}))
    with moto_server() as (url, _proc):
        yield {"endpoint_url": url, "credentials_ref": f"file:{creds}"}


@pytest.fixture(scope="session")
def azure_emulator(creds_dir):
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed at {AZURITE}: run scripts/setup.sh (make setup).")
    port = free_port()
    cmd = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
           "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"]
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    creds = creds_dir / "azure.conn"
    creds.write_text(conn)
    with server(cmd, port, "azurite-blob"):
        yield {"endpoint_url": "", "credentials_ref": f"file:{creds}", "connection_string": conn}


@pytest.fixture(scope="session")
def gcs_emulator():
    port = free_port()
    cmd = [str(VENV_BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port),
           "--in-memory", "-q"]
    with server(cmd, port, "gcp-storage-emulator"):
        yield {"endpoint_url": f"http://127.0.0.1:{port}", "credentials_ref": ""}


def create_container(kind: str, emulator: dict, name: str, *, object_lock: bool = False) -> None:
    if kind == "s3":
        import boto3

        creds = json.loads(Path(emulator["credentials_ref"][5:]).read_text())
        client = boto3.client("s3", endpoint_url=emulator["endpoint_url"], region_name="us-east-1", **creds)
        client.create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
    elif kind == "azure":
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(emulator["connection_string"]).create_container(name)
    elif kind == "gcs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(project="emulator", credentials=AnonymousCredentials(),
                       client_options={"api_endpoint": emulator["endpoint_url"]}).create_bucket(name)


@pytest.fixture
def cloud_location(request, db, tmp_path):
    """cloud_location(kind, name=..., **fields) -> a saved StorageLocation on a fresh bucket of that emulator
    (kind "local": a fresh directory). Emulators start on first use, once per session."""
    from apps.core.services import SYSTEM
    from apps.storage.models import StorageLocation
    from apps.storage.services import save_location

    def make(kind: str, name: str | None = None, *, object_lock: bool = False, **fields):
        name = name or f"{kind}-{uuid.uuid4().hex[:6]}"
        if kind == "local":
            loc = StorageLocation(name=name, kind="local", path=str(tmp_path / name), **fields)
            return save_location(location=loc, actor=SYSTEM)
        emulator = request.getfixturevalue(f"{kind}_emulator")
        bucket = f"b{uuid.uuid4().hex[:12]}"
        create_container(kind, emulator, bucket, object_lock=object_lock)
        fields.setdefault("region", "us-east-1" if kind == "s3" else "")
        loc = StorageLocation(name=name, kind=kind, bucket=bucket, endpoint_url=emulator["endpoint_url"],
                              credentials_ref=emulator["credentials_ref"], **fields)
        return save_location(location=loc, actor=SYSTEM)

    return make
