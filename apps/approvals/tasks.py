"""django-q2 entry point (setup_schedules): pending requests past their time become expired, and are audited,
even when nobody opens the approvals list (which also expires them before it reads)."""


def expire_requests() -> int:
    from apps.approvals.services import expire_stale

    return expire_stale()
