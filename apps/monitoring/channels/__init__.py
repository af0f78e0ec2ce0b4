"""Notification channels, one module per kind; importing the package registers them all."""
from apps.monitoring.channels import email, pagerduty, slack, webhook  # noqa: F401
