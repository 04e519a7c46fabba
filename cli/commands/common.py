"""What every ``connector`` subcommand shares: readable errors, settings, the database.

Every command turns a ``ConfigurationError`` into one message and exit status 2, and any other
``ConnectorError`` into one line and exit status 1 — never a traceback. A command that needs
its own exit codes for particular errors passes them in ``extra``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from connector.errors import ConfigurationError, ConnectorError

if TYPE_CHECKING:
    from connector.config import Settings
    from connector.db import Database

F = TypeVar("F", bound=Callable[..., Any])
#: An error class, and what to do with it: print a message and return the exit status.
Handler = tuple[type[ConnectorError], Callable[[ConnectorError], int]]


def friendly_errors(fn: F | None = None, *, extra: tuple[Handler, ...] = ()) -> Any:
    """Decorator (bare or with ``extra=``) that turns connector errors into exit codes."""

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except ConfigurationError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(2)
            except ConnectorError as exc:
                for cls, handle in extra:
                    if isinstance(exc, cls):
                        sys.exit(handle(exc))
                click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
                sys.exit(1)

        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


def load_settings() -> Settings:
    """Settings from the environment, with logging configured (and redacting) before any work."""
    from connector.config import get_settings
    from connector.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return settings


def context() -> tuple[Settings, Database]:
    from connector.db import get_database

    settings = load_settings()
    return settings, get_database(settings.database_url)


def for_connection(ident: str) -> tuple[Settings, Database, int]:
    """``context()`` plus the id of the connection the command names (by id or name), the
    opening of every per-connection command; an unknown name is a ``ConnectorError``."""
    from connector import connections

    settings, db = context()
    return settings, db, connections.resolve(db, ident).id


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
