"""The one place where the console turns the result of an action into a response.

Every console action calls a service or job runner (the same ones the API calls) through `start()`:
- a Job: go to its page (progress bar and log);
- accepted but waiting for a second admin's approval (Deferred): that message, as information, on the page the
  action came from;
- a refusal (UserError): the message on the page the action came from, nothing started;
- anything else a service may return instead of a job (e.g. an approval request for a destructive action):
  its `console_message` (or str()) as an information message, back to where the action came from.
"""
from django.contrib import messages
from django.shortcuts import redirect

from apps.core.errors import Deferred, UserError
from apps.jobs.models import Job


def start(request, call, *, back, prefix: str = "", success: str = ""):
    """Run `call()`; redirect to the job, or back (a URL) with the reason. Returns (response, job or None)."""
    try:
        result = call()
    except Deferred as exc:  # accepted, waiting for a second admin (apps/approvals): not an error
        messages.info(request, f"{prefix}{exc}")
        return redirect(back), None
    except UserError as exc:
        messages.error(request, f"{prefix}{exc}")
        return redirect(back), None
    if isinstance(result, Job):
        if success:
            messages.success(request, success)
        return redirect("console:job", job_id=result.pk), result
    messages.info(request, getattr(result, "console_message", None) or str(result))
    return redirect(back), None
