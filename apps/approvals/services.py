"""Writes of two-person approval: record a request, approve it (which runs the action), reject it, expire old ones.

Both people are in the audit log: `approval.requested` names the requester, `approval.approved` /
`approval.rejected` the decider (with the requester in its details), and the action's own events follow,
carried out with the approver as actor.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.approvals import gate, registry
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.core.errors import ConflictError, UserError
from apps.core.roles import ADMIN, has_role
from apps.core.services import Actor, audit

log = logging.getLogger(__name__)


class NotAllowed(UserError):
    """The decider may not decide this request (their own, or not an admin): a 403 in the API."""


def _user(actor: Actor):
    return actor.user if actor.user is not None and actor.user.is_authenticated else None


def create_request(*, action: str, actor: Actor, params: dict, summary: str, obj=None) -> ApprovalRequest:
    request = ApprovalRequest.objects.create(
        action=action, summary=summary[:300], parameters=params,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        requested_by=_user(actor), requested_by_name=actor.name, requested_via=actor.via,
        expires_at=timezone.now() + timedelta(hours=settings.APPROVAL_EXPIRY_HOURS),
    )
    audit(actor=actor, action="approval.requested", obj=request,
          details={"action": action, "summary": request.summary, "parameters": params})
    return request


def expire_stale() -> int:
    """Pending requests past their time become expired (each audited as done by the system)."""
    stale = list(ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=timezone.now()))
    for request in stale:
        if ApprovalRequest.objects.filter(pk=request.pk, status=ApprovalStatus.PENDING).update(
                status=ApprovalStatus.EXPIRED):
            audit(actor=Actor(extra={"name": "system"}), action="approval.expired", obj=request,
                  details={"action": request.action, "requested_by": request.requested_by_name})
    return len(stale)


def _decide(*, request: ApprovalRequest, actor: Actor, status: str, note: str) -> ApprovalRequest:
    """Lock the pending request and record the decision; every refusal is a clear error."""
    if not has_role(actor.user, ADMIN):
        raise NotAllowed("Deciding approval requests needs the admin role.")
    with transaction.atomic():
        locked = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != ApprovalStatus.PENDING:
            raise ConflictError(f"Approval request {locked.pk} is {locked.status}, no longer pending.")
        if locked.expires_at <= timezone.now():
            locked.status = ApprovalStatus.EXPIRED
            locked.save(update_fields=["status", "updated_at"])
            audit(actor=actor, action="approval.expired", obj=locked, details={"action": locked.action})
            expired = ConflictError(f"Approval request {locked.pk} expired at {locked.expires_at:%Y-%m-%d %H:%M} "
                                    "UTC; ask for the action again.")
        else:
            expired = None
            own = locked.requested_by_id is not None and locked.requested_by_id == getattr(actor.user, "pk", None)
            if own and status == ApprovalStatus.APPROVED:  # rejecting one's own request withdraws it
                raise NotAllowed("You requested this action; a second admin must approve or reject it "
                                 "(you may not decide your own request).")
            locked.status, locked.decided_by, locked.decided_by_name = status, _user(actor), actor.name
            locked.decided_at, locked.note = timezone.now(), note[:2000]
            locked.save(update_fields=["status", "decided_by", "decided_by_name", "decided_at", "note",
                                       "updated_at"])
            audit(actor=actor, action=f"approval.{status}", obj=locked,
                  details={"action": locked.action, "requested_by": locked.requested_by_name,
                           "decided_by": actor.name, "note": note[:2000]})
    if expired is not None:  # raised after the commit: the expiry is recorded
        raise expired
    return locked


def approve(*, request: ApprovalRequest, actor: Actor, note: str = "") -> ApprovalRequest:
    """Approve and carry out the action with its stored parameters, the approver as actor."""
    request = _decide(request=request, actor=actor, status=ApprovalStatus.APPROVED, note=note)
    try:
        with gate.trusted():
            result = registry.executor_for(request.action)(request.parameters, actor) or {}
    except Exception as exc:
        if not isinstance(exc, UserError):
            log.exception("Approved request %s (%s) failed", request.pk, request.action)
        request.status, request.error = ApprovalStatus.FAILED, str(exc)[:2000] or type(exc).__name__
        request.save(update_fields=["status", "error", "updated_at"])
        audit(actor=actor, action="approval.failed", obj=request,
              details={"action": request.action, "error": request.error})
        return request
    request.status, request.result = ApprovalStatus.EXECUTED, result
    request.save(update_fields=["status", "result", "updated_at"])
    audit(actor=actor, action="approval.executed", obj=request,
          details={"action": request.action, "requested_by": request.requested_by_name, "approved_by": actor.name,
                   "result": result})
    return request


def reject(*, request: ApprovalRequest, actor: Actor, note: str = "") -> ApprovalRequest:
    return _decide(request=request, actor=actor, status=ApprovalStatus.REJECTED, note=note)
