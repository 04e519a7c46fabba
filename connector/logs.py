"""Process-wide logging: one format, and the redaction filter on every handler.

Redaction sits on the handlers (not only on loggers) so records from third-party loggers
(requests, urllib3, celery, werkzeug) are scrubbed too.
"""

from __future__ import annotations

import logging
import sys

from connector.api.redaction import RedactingFilter

#: gunicorn's access-log line (``gunicorn.conf.py``, ``connector run``): gunicorn's default
#: without the two fields that carry query strings. ``%(r)s`` (the request line) and ``%(q)s``
#: hold ``?token=...`` and OAuth ``code``/``state``; the referer ``%(f)s`` can hold another
#: page's query. The path (``%(U)s``) is enough to follow a request; nothing secret is in it.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def configure_logging(level: str | int | None = None) -> None:
    if level is None:
        from connector.config import get_settings

        try:
            level = get_settings().log_level
        except Exception:  # a bad config is reported by the caller, not by the logger
            level = "INFO"
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_connector", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._connector = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
