"""The admin app, with its `admin.py` modules imported when the URLconf loads (backupsite/urls.py), not at start-up.

Django's AdminConfig imports every app's admin module in `ready()`, so in every process; ours pull in the forms,
services and helpers the admin pages use. Only the web server needs them, and it loads the URLconf before it
serves the admin (so does anything that reverses a URL, and the test client). The admin's system checks import
them first, so `manage.py check` still checks every ModelAdmin.

It is also first in INSTALLED_APPS, so it brackets Django's loading of the apps: the cyclic garbage collector is
off from the start of manage.py / wsgi.py (or at the latest from this config's creation, the start of
`django.setup()`'s app loading) to its `ready()` (every model loaded), and the objects made until then are frozen (`gc.freeze()`: long-lived classes, functions, modules that later collections
need not scan). Loading the apps makes some 50,000 objects, and the collector, triggered by allocation counts,
scanned them all at least once (a full collection, tens of ms) for ~2,700 garbage objects (~0.5 MB), which now
stay. Processes that fork (the job worker) share the frozen pages better too.
"""
from django.contrib import admin
from django.contrib.admin.apps import SimpleAdminConfig
from django.contrib.admin.checks import check_admin_app, check_dependencies
from django.core import checks

from backupsite import startup


def check_admin_app_discovered(app_configs, **kwargs):
    admin.autodiscover()
    return check_admin_app(app_configs, **kwargs)


class AdminConfig(SimpleAdminConfig):
    def __init__(self, *args, **kwargs):
        startup.hold_gc()
        super().__init__(*args, **kwargs)

    def ready(self):
        startup.release_gc()
        checks.register(check_dependencies, checks.Tags.admin)
        checks.register(check_admin_app_discovered, checks.Tags.admin)
