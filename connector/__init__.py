"""Zoho Books ⇄ SAP Concur connector core library (no Flask, no Celery)."""

from __future__ import annotations

__version__ = "0.1.0"
