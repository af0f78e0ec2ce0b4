"""The target page: a database target's backups grouped into chains, its recoverable window drawn as a timeline
(with the archive's gaps), and "back up now" (full logical / physical, or incremental)."""
from django.shortcuts import get_object_or_404, render

from apps.backups import wal_selectors
from apps.backups.services import LOGICAL_FORMATS
from apps.console import selectors
from apps.console.permissions import console_page
from apps.core.roles import ADMIN, OPERATOR, has_role
from apps.databases.models import DatabaseTarget


@console_page
def target_detail(request, target_id: int):
    target = get_object_or_404(DatabaseTarget.objects.select_related("storage_location"), pk=target_id)
    window = wal_selectors.recovery_window(target).as_dict()
    context = {
        "target": target,
        "chains": selectors.chains(target),
        "window": window,
        "timeline": selectors.timeline(window),
        "wal": wal_selectors.archive_status(target) if target.wal_archiving else None,
        "formats": LOGICAL_FORMATS,
        "can_operate": has_role(request.user, OPERATOR),
        "can_recover": has_role(request.user, ADMIN),
    }
    return render(request, "console/target.html", context)
