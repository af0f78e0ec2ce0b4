"""The admin app, with its `admin.py` modules imported when the URLconf loads (backupsite/urls.py), not at start-up.

Django's AdminConfig imports every app's admin module in `ready()`, so in every process; ours pull in the forms,
services and helpers the admin pages use. Only the web server needs them, and it loads the URLconf before it
serves the admin (so does anything that reverses a URL, and the test client). The admin's system checks import
them first, so `manage.py check` still checks every ModelAdmin.
"""
from django.contrib import admin
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks


def check_admin_app_discovered(app_configs, **kwargs):
    admin.autodiscover()
    return check_admin_app(app_configs, **kwargs)


class AdminConfig(SimpleAdminConfig):
    def ready(self):
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_admin_app_discovered, checks.Tags.admin)
