"""The console header's permission check, one query.

`{% if request.user|has_model_perm:"approvals.change_approvalrequest" %}` decides what
`{% if perms.approvals.change_approvalrequest %}` decided, by Django's own ModelBackend.with_perm (the only
backend here that grants permissions: the lockout backend only authenticates): an EXISTS over the user's and
its groups' permissions, where `perms` loaded every permission of the user and of its groups (two queries and a
set of a few hundred names, about 5 ms of the dashboard's CPU). tests/test_console_pages.py compares both for
every kind of user.
"""
from django import template
from django.contrib.auth import get_user_model

register = template.Library()
BACKEND = "django.contrib.auth.backends.ModelBackend"


@register.filter
def has_model_perm(user, perm: str) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return get_user_model().objects.with_perm(perm, backend=BACKEND).filter(pk=user.pk).exists()
