"""Signals of the jobs app: other apps settle what a dead job was working on."""
from django.dispatch import Signal

# Sent with `job` (the Job row, already failed) when a job whose process died is settled.
job_abandoned = Signal()

# Sent with `job` (the Job row, refreshed: succeeded or failed) when a job that ran here has finished.
job_finished = Signal()
