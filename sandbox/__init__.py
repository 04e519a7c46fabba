"""Local simulation of Zoho Books and SAP Concur, faithful enough to develop and test against.

Entry points: ``sandbox.server.SandboxServer`` (in-process, tests), ``sandbox.server.serve``
(CLI), ``sandbox.admin.AdminClient`` (control API client). See docs/sandbox.md.
"""

from __future__ import annotations

__all__ = ["AdminClient", "SandboxServer", "SandboxState"]


def __getattr__(name: str) -> object:
    # Lazy so importing sandbox.clock etc. does not pull in Flask.
    if name == "SandboxServer":
        from sandbox.server import SandboxServer

        return SandboxServer
    if name == "SandboxState":
        from sandbox.state import SandboxState

        return SandboxState
    if name == "AdminClient":
        from sandbox.admin import AdminClient

        return AdminClient
    raise AttributeError(name)
