from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Approvals"

    def ready(self):
        # Every app's approvals.py registers the executors of its gated actions that are not job runners (job
        # runners with an `approval_action` register themselves when the jobs app imports them).
        autodiscover_modules("approvals")
