"""Restores replay the attacks of the issue "Security and crash-safety holes" (items 1, 2 and 10).

Everything is real: the session's PostgreSQL cluster, stored artifacts on disk, the REST API, the console,
the management command and a raw TCP listener standing in for a hostile server.
"""
import io
import json
import socket
import struct
import threading
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.backups import restores
from apps.backups.models import Backup
from apps.core.errors import UserError
from apps.databases import catalog
from apps.databases.connection import PgConn
from apps.databases.engines import logical
from apps.databases.identifiers import check_name, check_table
from apps.jobs.models import Job
from apps.pipeline.artifact import ArtifactError, Decoder, Encoder
from apps.pipeline.keys import Keyring, generate_spec
from apps.verification.services import verify_backup
from tests.helpers import V1

pytestmark = pytest.mark.django_db

PASSWORD = "target-pw-must-never-leave-7f3a"


def backup_now(fmt: str = "custom") -> Backup:
    out = io.StringIO()
    call_command("db_backup", "sample", "--format", fmt, stdout=out)
    return Backup.objects.get(pk=json.loads(out.getvalue().strip().splitlines()[-1])["id"])


def restore_via_api(client, backup: Backup, **body):
    return client.post(f"{V1}/database/backups/{backup.pk}/restore", {"target": "sample", **body}, format="json")


def user_tables(conn: PgConn) -> list:
    with catalog.connect(conn) as c:
        return catalog.user_tables(c.cursor())


# --- item 1: an artifact cannot downgrade itself to "not encrypted" ----------------------------------------


def shell_payload(witness) -> bytes:
    """A plain-format "dump" that runs a shell command as whoever runs psql.

    Padded to a few MiB so that psql reaches the command long before the stream (and any end check) is over.
    """
    return f"\\! id > {witness}\nCREATE TABLE planted (x int);\n".encode() + b"-- padding\n" * 400_000


def replace_artifact(backup_root, backup: Backup, raw: bytes, *, keyring=None, compression=None) -> None:
    """Overwrite a stored artifact, as someone with write access to the storage location could."""
    artifact = backup.artifacts.get()
    encoder = Encoder(compression_name=compression or artifact.compression, keyring=keyring)
    (backup_root / artifact.key).write_bytes(b"".join(encoder.encode([raw])))


def test_downgraded_plain_artifact_runs_no_shell_command(api_as, target, backup_root, fresh_db, tmp_path):
    """The issue's attack: an encrypted plain backup swapped for an unencrypted `\\!` script, then restored."""
    backup = backup_now("plain")
    assert backup.artifacts.get().cipher == "aes-256-gcm"
    witness = tmp_path / "pwned"
    replace_artifact(backup_root, backup, shell_payload(witness))
    dest = fresh_db(create=False, prefix="downgrade")
    admin = api_as("admin")
    r = restore_via_api(admin, backup, dbname=dest.dbname, create=True)
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job_id"])
    assert not witness.exists()  # psql never saw a byte
    # Refused by the size/checksum check of the copy (apps/backups/sources.py) or, same size, by the decoder.
    assert job.status == "failed" and ("Refusing an unencrypted artifact" in job.error
                                       or "bytes, expected" in job.error), job.error
    assert not catalog.database_exists(dest)  # refused before the database was even created


def test_decoder_refuses_a_header_that_differs_from_the_record():
    keys = Keyring.parse(f"{generate_spec('cur')},{generate_spec('old')}")
    old_only = Keyring(keys=keys.keys, current_id="old")

    def artifact(keyring, compression="zstd"):
        enc = Encoder(compression_name=compression, keyring=keyring)
        stored = b"".join(enc.encode([b"SELECT 1;\n" * 1000]))
        return stored, SimpleNamespace(**enc.stats.as_manifest())

    stored, record = artifact(keys)
    assert b"".join(Decoder.for_record(record, keyring=keys).decode([stored])) == b"SELECT 1;\n" * 1000
    cases = {
        "unencrypted": artifact(None),  # the downgrade, even with its own checksums recorded
        "key id": artifact(old_only),  # another configured master key
        "compression": artifact(keys, compression="gzip"),
    }
    for what, (forged, _) in cases.items():
        chunks = Decoder.for_record(record, keyring=keys).decode([forged])
        with pytest.raises(ArtifactError, match="unencrypted" if what == "unencrypted" else what):
            next(chunks)  # refused before the first byte is yielded
    # With keys configured, an unencrypted artifact is refused even when nothing is expected of it.
    unencrypted, _ = artifact(None)
    with pytest.raises(ArtifactError, match="unencrypted artifact while encryption keys are configured"):
        next(Decoder(keyring=keys).decode([unencrypted]))


def test_unencrypted_backup_is_refused_once_keys_are_configured(target, settings, fresh_db, tmp_path, backup_root):
    keys = settings.BACKUP_ENCRYPTION_KEYS
    settings.BACKUP_ENCRYPTION_KEYS = ""
    backup = backup_now("plain")
    assert backup.artifacts.get().cipher == "none"
    settings.BACKUP_ENCRYPTION_KEYS = keys
    dest = fresh_db(create=False)
    with pytest.raises(CommandError, match="not encrypted, but encryption keys are configured"):
        call_command("db_restore", backup.pk, "--dsn", f"postgresql://postgres@{dest.host}:{dest.port}/{dest.dbname}",
                     "--create", stdout=io.StringIO())
    assert not catalog.database_exists(dest)


def test_without_keys_a_tampered_unencrypted_artifact_fails_its_checksum_first(
        target, settings, fresh_db, tmp_path, backup_root):
    settings.BACKUP_ENCRYPTION_KEYS = ""
    backup = backup_now("plain")
    witness = tmp_path / "pwned"
    replace_artifact(backup_root, backup, shell_payload(witness))
    dest = fresh_db(create=False)
    with pytest.raises(CommandError, match="fails its SHA-256 check|bytes, expected"):
        call_command("db_restore", backup.pk, "--dsn", f"postgresql://postgres@{dest.host}:{dest.port}/{dest.dbname}",
                     "--create", stdout=io.StringIO())
    assert not witness.exists()


def test_decrypt_verification_refuses_a_downgraded_artifact(target, backup_root):
    backup = backup_now("plain")
    replace_artifact(backup_root, backup, b"SELECT 1;\n")
    path = backup_root / backup.artifacts.get().key
    with open(path, "ab") as fh:  # the recorded size, so that the size check does not stop it first
        fh.write(bytes(backup.size_stored - path.stat().st_size))
    [run] = verify_backup(backup=backup, level="decrypt")
    assert run.result == "failed" and "unencrypted artifact" in run.error, run.error


def test_decrypt_tool_refuses_a_downgraded_artifact(tmp_path):
    """tools/decrypt_artifact.py: no unencrypted artifact when keys are given; the manifest's header fields hold."""
    from tests.test_decrypt_tool import SPEC, assert_failed, make_artifact, run_tool, tool_env

    raw = b"\\! id\n" + b"-- x\n" * 1000
    genuine, forged = tmp_path / "dump.sql.zst.aead", tmp_path / "forged" / "dump.sql.zst.aead"
    forged.parent.mkdir()
    stats = make_artifact(genuine, raw)
    forged_stats = make_artifact(forged, raw, keyring=None)
    for keys, env in (("--keys", tool_env()), (None, tool_env(BACKUP_ENCRYPTION_KEYS=SPEC))):
        proc = run_tool(forged, *([keys, SPEC] if keys else []), "-o", tmp_path / "out", env=env)
        assert_failed(proc, "not encrypted", "keys were given")
        assert not (tmp_path / "out").exists()
    # The manifest of the genuine artifact, given with the forged one: refused on its header, keys or not.
    manifest = tmp_path / "manifest.json"
    entry = {"name": "dump.sql", "key": "targets/t/backups/X/dump.sql.zst.aead", **stats.as_manifest()}
    manifest.write_text(json.dumps({"manifest_version": 1, "artifacts": [entry]}))
    proc = run_tool(forged, "--manifest", manifest)
    assert_failed(proc, "header says cipher 'none' but the manifest says 'aes-256-gcm'")
    assert proc.stdout == b""
    gzip_art = tmp_path / "gz" / "dump.sql.zst.aead"
    gzip_art.parent.mkdir()
    make_artifact(gzip_art, raw, compression="gzip")
    assert_failed(run_tool(gzip_art, "--keys", SPEC, "--manifest", manifest), "compression 'gzip'")
    # Without keys, an unencrypted artifact still reads (DEBUG setups), held to its own manifest entry.
    entry.update(forged_stats.as_manifest())
    manifest.write_text(json.dumps({"manifest_version": 1, "artifacts": [entry]}))
    proc = run_tool(forged, "--manifest", manifest)
    assert proc.returncode == 0 and proc.stdout == raw, proc.stderr


# --- item 2: a database name is never a connection string ------------------------------------------------


class FakeServer:
    """A TCP listener speaking just enough of the PostgreSQL protocol to ask for a cleartext password.

    It records every byte received: a client that connects here and answers would hand over its password.
    """

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with client:
                client.settimeout(2)
                try:
                    packet = client.recv(65536)
                    self.received += packet
                    if packet[4:8] in (struct.pack(">i", 80877103), struct.pack(">i", 80877104)):  # SSL/GSS
                        client.sendall(b"N")
                        packet = client.recv(65536)
                        self.received += packet
                    client.sendall(b"R" + struct.pack(">ii", 8, 3))  # AuthenticationCleartextPassword
                    while data := client.recv(65536):
                        self.received += data
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def fake_server():
    server = FakeServer()
    yield server
    server.close()


def hostile_names(port: int) -> list[str]:
    return [f"host=127.0.0.1 port={port} dbname=x", f"postgresql://127.0.0.1:{port}/x",
            f"postgres://postgres@127.0.0.1:{port}/x?sslmode=disable"]


@pytest.fixture
def target_with_password(target):
    from apps.core.services import SYSTEM
    from apps.databases.services import save_target

    return save_target(target=target, actor=SYSTEM, password=PASSWORD)


def test_api_refuses_a_connection_string_as_dbname(api_as, target_with_password, fake_server):
    """The issue's attack: {"dbname": "host=... port=... dbname=x", "create": true} sent the password away."""
    backup = backup_now()
    admin = api_as("admin")
    for name in hostile_names(fake_server.port):
        r = restore_via_api(admin, backup, dbname=name, create=True)
        assert r.status_code == 400 and "dbname" in r.json(), r.content
        assert "not an acceptable database name" in str(r.json()["dbname"])
    for body in ({"dbname": "ok", "schema": "public port=1"}, {"dbname": "ok", "table": "public.x=y"},
                 {"dbname": "ok", "table": "a.b.c"}):
        r = restore_via_api(admin, backup, **body)
        assert r.status_code == 400, (body, r.content)
    assert not Job.objects.filter(type="restore.database").exists()
    assert fake_server.connections == 0 and PASSWORD.encode() not in fake_server.received


def test_console_and_cli_refuse_a_connection_string_as_dbname(admin_client, target_with_password, fake_server):
    backup = backup_now()
    for name in hostile_names(fake_server.port):
        page = admin_client.post(f"/backups/{backup.pk}/", {"target": "sample", "dbname": name, "create": "on"})
        assert page.status_code == 400 and b"not an acceptable database name" in page.content
        dsn = f"postgresql://postgres@127.0.0.1:{fake_server.port}/{quote(name, safe='')}"
        with pytest.raises(CommandError, match="not an acceptable database name"):
            call_command("db_restore", backup.pk, "--dsn", dsn, "--create", stdout=io.StringIO())
    with pytest.raises(CommandError, match="not an acceptable table name"):
        call_command("db_restore", backup.pk, "--dsn", "postgresql://postgres@127.0.0.1:1/ok", "--table",
                     "public.x y", stdout=io.StringIO())
    assert not Job.objects.filter(type="restore.database").exists()
    assert fake_server.connections == 0 and PASSWORD.encode() not in fake_server.received


def test_restore_service_refuses_a_connection_string_recorded_earlier(target_with_password, fake_server):
    """A job recorded before names were checked is refused when it runs, before any connection."""
    backup = backup_now()
    conn = PgConn.for_target(target_with_password).with_db(hostile_names(fake_server.port)[0])
    with pytest.raises(UserError, match="not an acceptable database name"):
        restores.run_restore(backup=backup, conn=conn, request=restores.RestoreRequest(create=True), ctx=None)
    assert fake_server.connections == 0


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_restore_tools_take_the_name_from_pgdatabase_only(target_with_password, fake_server, fmt):
    """Below every check: pg_restore and psql get the name so that it can never be read as a conninfo."""
    backup = backup_now(fmt)
    for name in hostile_names(fake_server.port):
        conn = PgConn.for_target(target_with_password).with_db(name)
        stream = restores.artifact_stream(backup=backup, artifact=backup.artifacts.get())
        with pytest.raises(logical.RestoreError, match="does not exist"):  # the name asked for, as a name
            logical.restore(conn, stream, fmt=fmt)
    assert fake_server.connections == 0 and PASSWORD.encode() not in fake_server.received


@pytest.mark.parametrize("name", ["shop", "Shop_2", "_x", "a$b", "shop-restored", "x" * 63])
def test_identifiers_accepted(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "1shop", "-x", "a b", "a=b", "a.b", "a'b", 'a"b', "a\\b", "x" * 64,
                                  "postgresql://h/x", "host=h", "caf\u00e9", "a\x00b", "a\nb"])
def test_identifiers_refused(name):
    with pytest.raises(UserError, match="not an acceptable database name") as refused:
        check_name(name)
    assert name not in str(refused.value) or not name  # never echoed: it may be a conninfo with a password


def test_table_names():
    assert check_table("billing.payments") == ("billing", "payments")
    assert check_table("tenants") == (None, "tenants")
    for bad in ("a.b.c", ".b", "a.", "a.b c"):
        with pytest.raises(UserError):
            check_table(bad)


# --- item 10: a table or schema that is not in the backup is refused -------------------------------------


def test_table_or_schema_not_in_the_backup_is_refused(api_as, target, fresh_db):
    backup = backup_now()
    admin = api_as("admin")
    dest = fresh_db(prefix="notinbackup")
    for body, message in (({"table": "public.nosuch"}, "holds no table 'public.nosuch'"),
                          ({"table": "nosuch"}, "holds no table 'nosuch'"),
                          ({"table": "billing.tenants"}, "holds no table 'billing.tenants'"),
                          ({"schema": "nosuch"}, "holds no schema 'nosuch'"),
                          ({"schema": "billing", "table": "tenants"}, "holds no table 'tenants'")):
        r = restore_via_api(admin, backup, dbname=dest.dbname, **body)
        assert r.status_code == 400 and message in r.json()["detail"], (body, r.content)
    assert not Job.objects.filter(type="restore.database").exists()
    # What the backup holds is accepted, with or without the schema.
    r = restore_via_api(admin, backup, dbname=dest.dbname, table="tenants")
    assert r.status_code == 202 and Job.objects.get(pk=r.json()["job_id"]).status == "succeeded"
    assert user_tables(dest) == [("public", "tenants")]
    other = fresh_db(prefix="schemarestore")
    r = restore_via_api(admin, backup, dbname=other.dbname, schema="public")
    job = Job.objects.get(pk=r.json()["job_id"])
    assert job.status == "succeeded", job.error
    assert sorted(user_tables(other)) == [("public", "leases"), ("public", "properties"), ("public", "tenants")]


def test_restores_go_only_to_registered_servers_approved_ones_too(api_as, target_with_password, fake_server,
                                                                settings, fresh_db):
    """The destination is a registered target (its server and credentials) plus a database name: an unknown
    target or a server named in the request is refused, and an approval request stores only the target's id
    (the executor looks the server up again), never a host or a connection string from the request."""
    from apps.approvals.models import ApprovalRequest

    backup = backup_now()
    admin = api_as("admin")
    for target in ("nope", f"127.0.0.1:{fake_server.port}", f"host=127.0.0.1 port={fake_server.port}"):
        r = restore_via_api(admin, backup, target=target, dbname="x", create=True)
        assert r.status_code == 400 and "target" in r.json(), r.content
    new = fresh_db(create=False).dbname  # dropped after the test
    r = restore_via_api(admin, backup, dbname=new, host="127.0.0.1", port=fake_server.port, create=True)
    assert r.status_code == 202  # unknown fields are ignored: the target's own server is used
    assert Job.objects.get(type="restore.database").args["target_id"] == target_with_password.pk

    settings.APPROVAL_REQUIRED_ACTIONS = ["all"]
    r = restore_via_api(admin, backup, dbname="existing_db", host="127.0.0.1", port=fake_server.port)
    assert r.status_code == 202 and "approval_request" in r.json()
    params = ApprovalRequest.objects.get().parameters
    assert params["target_id"] == target_with_password.pk and str(fake_server.port) not in json.dumps(params)
    assert fake_server.connections == 0
