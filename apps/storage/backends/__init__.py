"""Registry of storage backends: `get("local")` returns the class, `for_location(loc)` an instance.

The registry is the one list of storage kinds: the model field, the API and the admin form take their
choices from `kind_choices()` (as NetBox's `get_data_backend_choices()`), so a kind without a backend
cannot be created, and a new backend needs no migration.
"""
from apps.storage.backends.base import ObjectInfo, ObjectMissing, StorageBackend, StorageError

_REGISTRY: dict[str, type[StorageBackend]] = {}


def register(cls: type[StorageBackend]) -> type[StorageBackend]:
    _REGISTRY[cls.kind] = cls
    return cls


def get(kind: str) -> type[StorageBackend]:
    _load_builtin()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise StorageError(f"No storage backend for kind {kind!r} (available: {', '.join(sorted(_REGISTRY))}).") from None


def kinds() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) of every registered backend: the choices of StorageLocation.kind."""
    _load_builtin()
    return [(kind, _REGISTRY[kind].label or kind) for kind in sorted(_REGISTRY)]


def for_location(location) -> StorageBackend:
    return get(location.kind)(location)


def _load_builtin() -> None:
    # Each registers itself; the SDKs (boto3, azure, google) are imported only when a client is built.
    from apps.storage.backends import azure, gcs, local, s3  # noqa: F401


__all__ = ["ObjectInfo", "ObjectMissing", "StorageBackend", "StorageError", "register", "get", "for_location",
           "kinds", "kind_choices"]
