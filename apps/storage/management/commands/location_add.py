import os

from django.core.management.base import BaseCommand

from apps.core.commands import cli_actor, fail, print_json
from apps.core.errors import UserError
from apps.storage.models import StorageLocation
from apps.storage.services import save_location


class Command(BaseCommand):
    help = (
        "Create or update a storage location. Credentials are never given on the command line: the SDK's usual "
        "environment variables apply, or --credentials-file names a file holding them (its path is stored, not "
        "its content)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--kind", help="local, s3, azure or gcs (required when creating)")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--path", help="Root directory (local)")
        where.add_argument("--bucket", help="Bucket (s3, gcs)")
        where.add_argument("--container", help="Container (azure)")
        parser.add_argument("--prefix", help="Key prefix inside the bucket/container (cloud kinds)")
        parser.add_argument("--endpoint-url", help="Custom endpoint (S3-compatible stores, emulators)")
        parser.add_argument("--region")
        creds = parser.add_mutually_exclusive_group()
        creds.add_argument("--credentials-file", help="File with the credentials (AWS credentials INI or JSON, "
                                                      "Azure connection string, GCS service account key)")
        creds.add_argument("--credentials-env", metavar="VAR", help="Environment variable holding them")
        parser.add_argument("--storage-class", help="Class / tier of new objects")
        parser.add_argument("--immutability", choices=["off", "governance", "compliance"],
                            help="Write-once storage (needs --retention-days)")
        parser.add_argument("--retention-days", type=int)
        parser.add_argument("--capacity-bytes", type=int, help="Quota for the Storage Full alert")
        parser.add_argument("--primary", action="store_true", help="Make it the primary location")

    def handle(self, *args, name, **o):
        location = StorageLocation.objects.filter(name=name).first()
        created = location is None
        if created:
            if not o["kind"]:
                raise fail("--kind is required to create a location.")
            location = StorageLocation(name=name)
        if o["kind"]:
            location.kind = o["kind"]
        cloud = location.kind != "local"
        if o["path"] is not None:
            if cloud:
                raise fail("--path is for local locations; a cloud location takes --bucket/--container and --prefix.")
            location.path = o["path"]
        if o["prefix"] is not None:
            if not cloud:
                raise fail("--prefix is for cloud locations; a local location takes --path.")
            location.path = o["prefix"].strip("/")
        bucket = o["bucket"] if o["bucket"] is not None else o["container"]
        if bucket is not None:
            if not cloud:
                raise fail("--bucket/--container are for cloud locations.")
            if (o["container"] is not None) != (location.kind == "azure"):
                raise fail("Use --container for azure and --bucket for s3 and gcs.")
            location.bucket = bucket
        if o["credentials_file"]:
            location.credentials_ref = f"file:{os.path.abspath(o['credentials_file'])}"
        elif o["credentials_env"]:
            location.credentials_ref = f"env:{o['credentials_env']}"
        for option, field in (("endpoint_url", "endpoint_url"), ("region", "region"),
                              ("storage_class", "storage_class"), ("retention_days", "retention_days"),
                              ("capacity_bytes", "capacity_bytes")):
            if o[option] is not None:
                setattr(location, field, o[option])
        if o["immutability"] is not None:
            location.immutability = "" if o["immutability"] == "off" else o["immutability"]
        if o["primary"]:
            location.is_primary = True
        try:
            location = save_location(location=location, actor=cli_actor())
        except UserError as exc:
            raise fail(str(exc))
        except Exception as exc:  # model validation (e.g. a malformed URL) is bad input, not a crash
            from django.core.exceptions import ValidationError

            if isinstance(exc, ValidationError):
                raise fail("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
            raise
        self.stderr.write(f"{'Created' if created else 'Updated'} location {location.name}")
        print_json(self, {"id": location.pk, "name": location.name, "kind": location.kind, "bucket": location.bucket,
                          "path": location.path, "endpoint_url": location.endpoint_url, "region": location.region,
                          "credentials_ref": location.credentials_ref, "immutability": location.immutability,
                          "retention_days": location.retention_days, "is_primary": location.is_primary,
                          "created": created})
