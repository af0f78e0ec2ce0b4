from django.db.models import QuerySet

from apps.jobs.models import Job


def jobs() -> QuerySet[Job]:
    return Job.objects.select_related("requested_by")
