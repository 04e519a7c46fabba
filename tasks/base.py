"""The base task: ids in, ids out, and no sleeping in a worker slot."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Task
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from connector import backoff
from connector.config import get_settings
from connector.db import Database, get_database
from connector.errors import RateLimitedError

log = logging.getLogger(__name__)


class ConnectorTask(Task):  # type: ignore[misc]
    """Late-acked task with the process's database at hand.

    A ``RateLimitedError`` that escapes a task body (an empty shared bucket checked before any
    ledger work) becomes ``retry(countdown=wait)``: the slot is freed at once and the message
    comes back when the tenant's window has room.
    """

    abstract = True
    acks_late = True
    max_retries = None  # the ledger counts attempts and decides when a record is dead

    @property
    def db(self) -> Database:
        return get_database()

    @property
    def owner(self) -> str:
        """Lease owner: unique per delivery, readable in the ledger."""
        return f"{socket.gethostname()}:{os.getpid()}:{self.request.id}"

    @property
    def lease_seconds(self) -> float:
        return float(get_settings().lease_seconds)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        log.debug("task %s[%s] start args=%s", self.name, self.request.id, args)
        try:
            return super().__call__(*args, **kwargs)
        except RateLimitedError as exc:
            log.info(
                "task %s[%s] rate limited; retry in %.2fs",
                self.name,
                self.request.id,
                exc.retry_after,
            )
            raise self.retry(countdown=exc.retry_after, exc=exc) from None
        except DBAPIError as exc:
            if not (
                isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated
            ):
                raise  # the statement failed, the database did not go away
            # The database is unreachable (psycopg2 reports some socket cuts as a plain
            # DatabaseError; SQLAlchemy's disconnect detection flags those
            # ``connection_invalidated``). Celery acknowledges a task that raises, even with
            # acks_late, so without this the message would be gone and only the sweeper (after
            # a lease) could bring the work back. Retrying keeps it in the broker instead.
            countdown = backoff.TRANSIENT.delay(self.request.retries + 1)
            log.warning(
                "task %s[%s] database unavailable (%s); retry in %.1fs",
                self.name,
                self.request.id,
                type(exc).__name__,
                countdown,
            )
            raise self.retry(countdown=countdown, exc=exc) from None
