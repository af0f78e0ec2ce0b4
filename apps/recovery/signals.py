"""Signals of disaster recovery, for the monitoring app to turn into alerts (recovery does not import it).

Both are sent after the row is final (committed), with `sender` the model class:
- `failover_finished(failover=Failover)`: status succeeded or failed; `automatic` says who started it.
- `drill_finished(drill=DRDrill)`: status passed or failed; `objectives_met` and `reasons` say why.
- `auto_failover_fired(plan=DRPlan, failover=Failover)`: the health check started a failover on its own.
"""
from django.dispatch import Signal

failover_finished = Signal()
drill_finished = Signal()
auto_failover_fired = Signal()
