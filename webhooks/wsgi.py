"""WSGI entry for gunicorn: ``gunicorn webhooks.wsgi:app``."""

from __future__ import annotations

from connector.logs import configure_logging
from webhooks.app import create_app

configure_logging()
app = create_app()
