"""Alert rules, one module each; importing the package registers them all."""
from apps.monitoring.rules import (  # noqa: F401
    backup_age, backup_failed, backup_timeout, replication_failed, size_anomaly, storage_full, storage_unreachable,
    target_unreachable, verification_failed, wal_lag,
)
