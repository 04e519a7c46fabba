"""Simulated Zoho Books v3 and Zoho Accounts (all eight data centres)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from sandbox.state import SandboxState


def register(app: Flask, state: SandboxState) -> None:
    """Mount Zoho Accounts, Books and the Zoho admin endpoints on ``app``."""
    from sandbox.zoho import admin, books, errors, oauth

    app.register_blueprint(oauth.bp)
    app.register_blueprint(books.bp)
    app.register_blueprint(admin.bp)
    app.extensions.setdefault("sandbox_http_errors", {})["/zoho/"] = books.http_error
    state.faults.register_body_factory("/zoho/", errors.injected_fault_body)
