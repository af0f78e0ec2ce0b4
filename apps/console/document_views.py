"""The document source page: versions, back up now, restore a version (or one path of it) into a new
directory under DOCUMENTS_RESTORE_ROOT, verify a version. The same job runners as the API."""
from django import forms
from django.conf import settings
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from apps.console.outcomes import start
from apps.console.permissions import console_action, console_page
from apps.core.admin_utils import admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN, OPERATOR, has_role
from apps.databases import identifiers
from apps.documents import selectors
from apps.documents.jobs import DocumentBackupJob, DocumentRestoreJob, DocumentVerifyJob
from apps.documents.models import DocumentSource


class DocumentRestoreForm(forms.Form):
    version = forms.CharField(max_length=26, widget=forms.HiddenInput)
    directory = forms.CharField(max_length=63, help_text="A new directory under the server's DOCUMENTS_RESTORE_ROOT.")
    path = forms.CharField(max_length=4096, required=False, help_text="Only this file or directory (relative).")
    overwrite = forms.BooleanField(required=False, help_text="Replace files that exist in the directory.")

    def clean_directory(self):
        try:
            return identifiers.check_name(self.cleaned_data["directory"], what="directory")
        except UserError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_path(self):
        from apps.documents.manifest import normalize_request_path

        try:
            return normalize_request_path(self.cleaned_data["path"] or None)
        except UserError as exc:
            raise forms.ValidationError(str(exc)) from None


def _source(source_id: int) -> DocumentSource:
    return get_object_or_404(DocumentSource, pk=source_id)


@console_page
def source_detail(request, source_id: int, form: DocumentRestoreForm | None = None, status: int = 200):
    source = _source(source_id)
    context = {
        "source": source,
        "versions": selectors.versions(source=source.name)[:100],
        "form": form or DocumentRestoreForm(),
        "root": settings.DOCUMENTS_RESTORE_ROOT,
        "can_operate": has_role(request.user, OPERATOR),
        "can_restore": has_role(request.user, ADMIN),
    }
    return render(request, "console/source.html", context, status=status)


@console_action(OPERATOR, what="Backing up documents")
def source_backup(request, source_id: int):
    source = _source(source_id)
    if request.method != "POST":
        return redirect("console:source", source_id=source.pk)
    response, _ = start(request, lambda: DocumentBackupJob.enqueue(source=source, actor=admin_actor(request)),
                        back=reverse("console:source", args=[source.pk]), prefix=f"{source.name}: ")
    return response


@console_action(OPERATOR, what="Verifying document versions")
def version_verify(request, source_id: int, version_id: str):
    source = _source(source_id)
    if request.method != "POST":
        return redirect("console:source", source_id=source.pk)
    version = get_object_or_404(selectors.versions(source=source.name), pk=version_id)
    response, _ = start(request, lambda: DocumentVerifyJob.enqueue(version=version, actor=admin_actor(request)),
                        back=reverse("console:source", args=[source.pk]))
    return response


@console_action(ADMIN, what="Restoring documents")
def version_restore(request, source_id: int):
    source = _source(source_id)
    if request.method != "POST":
        return redirect("console:source", source_id=source.pk)
    form = DocumentRestoreForm(request.POST)
    if not form.is_valid():
        return source_detail.__wrapped__(request, source_id, form=form, status=400)
    v = form.cleaned_data
    version = get_object_or_404(selectors.versions(source=source.name), pk=v["version"])
    root = settings.DOCUMENTS_RESTORE_ROOT

    def enqueue():
        root.mkdir(parents=True, exist_ok=True)
        return DocumentRestoreJob.enqueue(version=version, to=str(root / v["directory"]), path=v["path"],
                                          overwrite=v["overwrite"], actor=admin_actor(request))

    response, _ = start(request, enqueue, back=reverse("console:source", args=[source.pk]))
    return response
