"""gunicorn settings of the production web server: `gunicorn -c backupsite/gunicorn.conf.py`.

Read from the environment like the Django settings (docs/OPERATIONS.md, "Production"):
  GUNICORN_BIND      address to listen on (default 127.0.0.1:8000; put a TLS proxy in front)
  WEB_CONCURRENCY    worker processes (default 2 x CPUs + 1)
  GUNICORN_THREADS   threads per worker (default 1: sync workers)
  GUNICORN_TIMEOUT   seconds a request may take before its worker is restarted (default 60)
Static files are served by whitenoise from STATIC_ROOT: run `manage.py collectstatic --noinput` at deploy.
Backups never run in the web server: requests queue jobs for the django-q2 workers (`manage.py qcluster`).
"""
import multiprocessing
import os

wsgi_app = "backupsite.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * multiprocessing.cpu_count() + 1)
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# The app is loaded once, then forked: faster start, shared memory pages. Database connections are opened per
# worker after the fork (Django opens them on first use).
preload_app = True
# Worker heartbeat files in memory, not on a disk that may stall.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Behind a proxy on this host: trust its X-Forwarded-* headers (NUM_PROXIES in the settings decides for
# X-Forwarded-For in the API throttle).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # "-" for stdout
errorlog = "-"
# gunicorn 25.1+ opens a control socket in ~/.gunicorn by default, one path for every server of the user: off
# (two servers on one host would share it); signals (HUP, TERM) control the server.
control_socket_disable = True
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The access log must never show secrets: query strings of this app carry none (tokens go in headers).
