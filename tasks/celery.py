"""The Celery app. Importing it never imports Flask (a test enforces the layering)."""

from __future__ import annotations

import logging

from celery import Celery, signals

from connector.logs import configure_logging

app = Celery("connector")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(
    ["tasks.pipeline", "tasks.maintenance", "tasks.intake", "tasks.sync", "tasks.vendors"],
    related_name=None,
)


@signals.setup_logging.connect
def _setup_logging(**_kwargs: object) -> None:
    # Our handler and redaction filter instead of Celery's, so no token reaches a log line.
    configure_logging()


@signals.worker_process_init.connect
def _fresh_connections(**_kwargs: object) -> None:
    # A forked pool child must not reuse the parent's database sockets.
    from connector import db

    for database in db._databases.values():
        database.engine.dispose(close=False)
    logging.getLogger(__name__).debug("pool process ready")
