"""The "test connection" of a location: reach it, write / read back / delete a probe object, and, for a
write-once location, prove that the store itself refuses to destroy a fresh object.

The report never holds credentials: only what was checked and, when something failed, the backend's message
(which names keys and buckets, never secrets).
"""
import os
import uuid

from apps.storage import backends
from apps.storage.backends import StorageError

PROBE_PREFIX = ".probe"


def test_location(location) -> dict:
    """{"location", "kind", "ok", "checks": [{"name", "ok", "detail"}], "immutability": {...}}."""
    checks: list[dict] = []
    report = {"location": location.name, "kind": location.kind, "ok": False, "checks": checks,
              "immutability": {"required": bool(location.immutability), "mode": location.immutability or None,
                               "enforced": None, "detail": ""}}

    def step(name: str, fn):
        try:
            detail = fn() or ""
        except (StorageError, OSError) as exc:
            checks.append({"name": name, "ok": False, "detail": str(exc)})
            return False
        checks.append({"name": name, "ok": True, "detail": detail})
        return True

    try:
        store = backends.for_location(location)
    except StorageError as exc:
        checks.append({"name": "configure", "ok": False, "detail": str(exc)})
        return report
    if not step("connect", store.check):
        return report
    if location.immutability and hasattr(store, "lock_configured"):
        configured, why = _safe(store.lock_configured)
        if not configured:
            report["immutability"].update(enforced=False, detail=why)
            checks.append({"name": "immutability", "ok": False, "detail": why})
            return report
    key = f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
    data = os.urandom(1024)

    def write():
        store.put_probe(key, data)
        return f"wrote {key}"

    def read():
        if store.get_bytes(key) != data:
            raise StorageError(f"{key} read back differs from what was written")
        return "read back identical"

    if not step("write", write) or not step("read", read):
        return report
    if location.immutability:
        enforced, why = _safe(lambda: store.immutability_enforced(key))
        report["immutability"].update(enforced=enforced, detail=why)
        checks.append({"name": "immutability", "ok": enforced, "detail": why})
        if enforced:
            checks.append({"name": "delete", "ok": True,
                           "detail": f"skipped: the probe {key} stays locked for a day, as intended"})
        else:
            step("delete", lambda: _delete(store, key, force=True))
    else:
        step("delete", lambda: _delete(store, key))
    report["ok"] = all(c["ok"] for c in checks)
    return report


def _delete(store, key: str, *, force: bool = False) -> str:
    if force:
        try:
            store.delete(key)
        except StorageError:
            pass  # the store kept it after all; the immutability check already said what it found
    else:
        store.delete(key)
        if store.stat(key) is not None:
            raise StorageError(f"{key} is still there after deleting it")
    return "deleted"


def _safe(fn) -> tuple[bool, str]:
    try:
        return fn()
    except Exception as exc:  # an SDK error while probing is a failed check, never a 500
        return False, f"{type(exc).__name__}: {str(exc)[:300]}"
