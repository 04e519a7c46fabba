"""Everything one running sandbox knows, shared by the Zoho and Concur halves.

Each vendor keeps its own store and plugs into the shared verbs (reset, seed, generate,
duplicates, created) through registration hooks, so the admin API and the tests can drive both
sides without knowing their internals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.clock import Clock
from sandbox.delivery import Deliverer
from sandbox.faults import FaultRegistry
from sandbox.stats import RequestStats

if TYPE_CHECKING:
    from sandbox.snapshot import SnapshotKeeper
    from sandbox.zoho.store import ZohoStore

Generator = Callable[..., Any]


class SandboxState:
    """Container for the clock, stores, fault registry, stats and webhook deliverer."""

    def __init__(self, *, zoho_rate_limit: int = 100, zoho_rate_period: float = 60.0) -> None:
        self.clock = Clock()
        self.lock = threading.RLock()
        self.faults = FaultRegistry()
        self.stats = RequestStats()
        self.deliverer = Deliverer()
        self.base_url = ""
        self.extensions: dict[str, Any] = {}
        self._reset_hooks: list[Callable[[], None]] = []
        self._seed_hooks: list[Callable[[], None]] = []
        self._generators: dict[str, list[Generator]] = {}
        self._duplicates: dict[str, Callable[[], Any]] = {}
        self._created: dict[str, Callable[[], Any]] = {}
        self.ui_sections: list[Callable[[], str]] = []
        #: The ``SnapshotKeeper`` when this sandbox keeps its state on disk (``--state-dir``).
        self.snapshot: SnapshotKeeper | None = None
        # Imported here so sandbox.state stays importable before the zoho package exists.
        from sandbox.zoho.store import ZohoStore

        self.zoho: ZohoStore = ZohoStore(
            self, rate_limit=zoho_rate_limit, rate_period=zoho_rate_period
        )

    @property
    def concur(self) -> Any:
        return self.extensions.get("concur")

    @concur.setter
    def concur(self, store: Any) -> None:
        self.extensions["concur"] = store

    # --- registration -------------------------------------------------------------------
    def on_reset(self, fn: Callable[[], None]) -> None:
        self._reset_hooks.append(fn)

    def on_seed(self, fn: Callable[[], None]) -> None:
        self._seed_hooks.append(fn)

    def register_generator(self, kind: str, fn: Generator) -> None:
        """Several generators may share a kind (both vendors have "vendors"); all of them run."""
        self._generators.setdefault(kind, []).append(fn)

    def register_duplicates(self, name: str, fn: Callable[[], Any]) -> None:
        self._duplicates[name] = fn

    def register_created(self, name: str, fn: Callable[[], Any]) -> None:
        self._created[name] = fn

    def register_ui(self, fn: Callable[[], str]) -> None:
        """Add an HTML fragment producer to the sandbox home page."""
        self.ui_sections.append(fn)

    # --- verbs ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty every store and forget faults, stats, deliveries and the clock offset."""
        with self.lock:
            self.faults.reset()
            self.stats.reset()
            self.deliverer.reset()
            self.clock.reset()
            for fn in self._reset_hooks:
                fn()

    def seed(self) -> None:
        """Load the deterministic demo tenants into every store."""
        with self.lock:
            for fn in self._seed_hooks:
                fn()

    def generators(self) -> list[str]:
        return sorted(self._generators)

    def generate(self, kind: str, n: int, **options: Any) -> dict[str, Any]:
        fns = self._generators.get(kind)
        if not fns:
            raise KeyError(f"unknown generator kind {kind!r}; known: {self.generators()}")
        with self.lock:
            results = [fn(n, **options) for fn in fns]
        return {"kind": kind, "n": n, "results": results}

    def duplicates(self) -> dict[str, Any]:
        with self.lock:
            return {name: fn() for name, fn in self._duplicates.items()}

    def created(self) -> dict[str, Any]:
        with self.lock:
            return {name: fn() for name, fn in self._created.items()}
