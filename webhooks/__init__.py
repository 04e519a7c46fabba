"""The thin Flask app: receivers, OAuth callbacks and health. It verifies, stores, enqueues and
answers; it never calls Zoho or Concur from a view.
"""

from __future__ import annotations

from webhooks.app import create_app

__all__ = ["create_app"]
