import os

from backupsite import startup

startup.hold_gc()  # until the apps are loaded: see backupsite/admin_app.py

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
application = get_wsgi_application()
