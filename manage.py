#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    from backupsite import startup

    startup.hold_gc()  # until the apps are loaded: see backupsite/admin_app.py
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backupsite.settings")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    finally:
        startup.freeze_for_exit()  # the interpreter's last collection skips the heap (backupsite/startup.py)
