"""Process-wide logging: one format, and the redaction filter on every handler.

Redaction sits on the handlers (not only on loggers) so records from third-party loggers
(requests, urllib3, celery, werkzeug) are scrubbed too.
"""

from __future__ import annotations

import logging
import sys

from connector.api.redaction import RedactingFilter

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
