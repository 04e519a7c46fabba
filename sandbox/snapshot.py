"""The sandbox's state on disk, so ``make run`` restarts find yesterday's documents (#14.9).

What is kept: every Zoho and Concur document (organizations with their bills, invoices,
contacts and journals; companies with vendors, payment requests and reports), the users,
grant codes and tokens the sandbox issued, and the webhook targets and ESS subscriptions. What
is not: faults, rate/daily/concurrency limits and counters, stats, pending deliveries, the clock
offset, and the per-run Concur signing key. Those describe one test run, and a restart should
not replay them.

Why pickle: the stores are dataclasses holding sets, ``defaultdict`` indexes, deques and
``Decimal`` amounts, with objects shared between indexes (``refresh_by_id`` and
``refresh_tokens`` hold the same tokens). JSON would need a hand-written codec per class that
must follow every store change. Loading never uses an unrestricted ``pickle.load``:
:class:`RestrictedUnpickler` resolves only the classes listed in :data:`ALLOWED`, so a file
someone replaced cannot run code.

Writes: the bytes are compared with the last ones written, and only a change is written, at
most once per :attr:`SnapshotKeeper.interval` (a background thread), at start and on a clean
stop. Each write goes to a temporary file that is fsynced and then ``os.replace``d over the old
one, so a crash mid-write leaves the previous snapshot intact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import os
import pickle
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.state import SandboxState

log = logging.getLogger(__name__)

FILENAME = "sandbox.snapshot"
#: Bumped when the layout of :func:`capture` changes; another format is "unreadable".
FORMAT = 1

#: ``(module, name)`` pairs the loader may resolve: the stores' own classes and plain builtins.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("sandbox.zoho.store", "Rec"),
        ("sandbox.zoho.store", "User"),
        ("sandbox.zoho.store", "Grant"),
        ("sandbox.zoho.store", "RefreshToken"),
        ("sandbox.zoho.store", "AccessToken"),
        ("sandbox.zoho.store", "Org"),
        ("sandbox.concur.store", "Employee"),
        ("sandbox.concur.store", "AccessToken"),
        ("sandbox.concur.store", "RefreshToken"),
        ("sandbox.concur.store", "Subscription"),
        ("sandbox.concur.store", "Company"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "tuple"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("collections", "deque"),
        ("decimal", "Decimal"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
    }
)


class SnapshotError(Exception):
    """The snapshot file cannot be used: corrupt, another format, or a class not allowed."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED`; anything else is refused, not imported."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise SnapshotError(f"the snapshot names {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def loads(blob: bytes) -> dict[str, Any]:
    """Decode a snapshot, refusing foreign classes and other formats.

    Raises:
        SnapshotError: for anything but a snapshot this code wrote.
    """
    try:
        data = RestrictedUnpickler(io.BytesIO(blob)).load()
    except SnapshotError:
        raise
    except Exception as exc:  # truncated, garbage, wrong protocol: all "unreadable"
        raise SnapshotError(f"not a readable snapshot ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SnapshotError(f"not a sandbox snapshot of format {FORMAT}")
    return data


# --------------------------------------------------------------------------- capture / restore


def _org_for_snapshot(org: Any) -> Any:
    """A shallow copy of an organization without its per-run limits, counters and list cache."""
    return dataclasses.replace(
        org,
        list_cache=OrderedDict(),
        daily_limit=None,
        daily_used=0,
        concurrent_limit=None,
        daily_day=-1,
    )


def capture(state: SandboxState) -> bytes:
    """The kept part of ``state`` as bytes; taken under the sandbox lock, so it is consistent."""
    with state.lock:
        zoho = state.zoho
        data: dict[str, Any] = {
            "format": FORMAT,
            "zoho": {
                "orgs": {key: _org_for_snapshot(org) for key, org in zoho.orgs.items()},
                "users": zoho.users,
                "users_by_email": zoho.users_by_email,
                "grants": zoho.grants,
                "refresh_tokens": zoho.refresh_tokens,
                "refresh_by_id": zoho.refresh_by_id,
                "access_tokens": zoho.access_tokens,
                "refresh_seq": zoho.refresh_seq,
                "created": zoho.created,
                "updated": zoho.updated,
                "webhooks": zoho.webhooks,
                "clients": zoho.clients,
            },
        }
        concur = state.concur
        if concur is not None:
            store = concur.store
            data["concur"] = {
                # The vendor-order cache is rebuilt on the first read; it is not state.
                "companies": {
                    key: dataclasses.replace(company, _vendor_order=None)
                    for key, company in store.companies.items()
                },
                "access_tokens": store.access_tokens,
                "refresh_tokens": store.refresh_tokens,
                "subscriptions": store.subscriptions,
                "events": store.events,
                "created": store.created,
            }
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)


def restore(state: SandboxState, data: dict[str, Any]) -> None:
    """Put a decoded snapshot into ``state`` (which keeps its own faults, limits and stats)."""
    with state.lock:
        zoho = state.zoho
        zoho._clear()
        for name, value in data["zoho"].items():
            setattr(zoho, name, value)
        concur = state.concur
        if concur is not None and "concur" in data:
            for name, value in data["concur"].items():
                setattr(concur.store, name, value)


# --------------------------------------------------------------------------- the keeper


class SnapshotKeeper:
    """Loads the snapshot at start, then writes it when it changed, at most once per interval."""

    def __init__(
        self, state: SandboxState, directory: str | os.PathLike[str], *, interval: float = 1.0
    ) -> None:
        self.state = state
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        self.interval = interval
        self.restored = False
        self.writes = 0
        self.saved_at: float | None = None
        self._last: bytes | None = None
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def info(self) -> dict[str, Any]:
        """What ``GET /_admin/snapshot`` shows; ``connector run`` reads ``restored``."""
        return {
            "path": str(self.path),
            "restored": self.restored,
            "writes": self.writes,
            "saved_at": self.saved_at,
            "bytes": len(self._last) if self._last is not None else None,
        }

    def load(self) -> bool:
        """Restore the snapshot if there is one; True when the state came from it.

        An unreadable file is moved aside (``sandbox.snapshot.unreadable-<UTC time>``) with a
        warning and False is returned, so the caller seeds a fresh sandbox.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            data = loads(blob)
            restore(self.state, data)
        except Exception as exc:  # SnapshotError, or a layout restore() cannot apply
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            aside = self.path.with_name(f"{FILENAME}.unreadable-{stamp}")
            os.replace(self.path, aside)
            log.warning(
                "sandbox snapshot %s is unreadable (%s); moved it to %s and starting a fresh "
                "seeded sandbox",
                self.path,
                exc,
                aside.name,
            )
            # restore() may have cleared part of the state before failing: start clean.
            self.state.reset()
            return False
        self._last = blob
        self.restored = True
        log.info("sandbox state restored from %s (%d bytes)", self.path, len(blob))
        return True

    def save(self) -> bool:
        """Write the state if its bytes changed since the last write; True when written.

        A failed write leaves the previous file in place and is retried at the next tick.
        """
        with self._save_lock:
            blob = capture(self.state)
            if blob == self._last:
                return False
            write_atomically(self.path, blob)
            self._last = blob
            self.writes += 1
            self.saved_at = time.time()
            return True

    def start(self) -> SnapshotKeeper:
        """Write now, then keep writing changes from a daemon thread."""
        self.save()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sandbox-snapshot", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save()
            except Exception:
                log.exception("could not write the sandbox snapshot %s; will retry", self.path)

    def stop(self) -> None:
        """Stop the thread and write the final state (nothing changed after it is lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.save()


def write_atomically(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` so readers see the old file or the new one, never a part."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (POSIX; not possible on every platform)
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
