"""gunicorn settings: the server the quick start runs and production runs.

    .venv/bin/gunicorn -c config/gunicorn.conf.py

Every value can be changed from the environment (``WEB_BIND``, ``WEB_WORKERS``, ``WEB_THREADS``,
``WEB_TIMEOUT``) or on the command line. Behind a TLS proxy, also set ``FORWARDED_ALLOW_IPS`` to the
proxy's address (and ``BEHIND_TLS_PROXY=1`` for Django).
"""

import os

wsgi_app = "config.wsgi:application"
bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
# Processes and threads per process: pages and the API mostly wait on the database.
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
# Restart workers now and then, so a slow leak never grows for ever.
max_requests = 5000
max_requests_jitter = 500
accesslog = os.environ.get("WEB_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Bounds on what a client may send before Django sees it.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
