"""Registry of storage backends: `get("local")` returns the class, `for_location(loc)` an instance."""
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


def for_location(location) -> StorageBackend:
    return get(location.kind)(location)


def _load_builtin() -> None:
    from apps.storage.backends import local  # noqa: F401  (registers itself)


__all__ = ["ObjectInfo", "ObjectMissing", "StorageBackend", "StorageError", "register", "get", "for_location"]
