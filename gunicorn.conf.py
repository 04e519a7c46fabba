"""gunicorn settings, loaded from the working directory by default (so the Procfile's ``web``
line stays as it is): an access log that never shows a query string.

The Zoho receiver may be called with ``?token=...`` and the OAuth callback with ``?code=...&
state=...``; gunicorn's default access-log line (``%(r)s``) would write both into the log
platform. See ``connector.logs.ACCESS_LOG_FORMAT`` and docs/security.md.
"""

from __future__ import annotations

from connector.logs import ACCESS_LOG_FORMAT

access_log_format = ACCESS_LOG_FORMAT
