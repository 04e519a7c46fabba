"""Time the sandbox snapshot (#14.9): save and restore of the seeded state, then +1,000 bills
and +1,000 vendors. ``python scripts/sandbox_snapshot_timing.py``; prints one line per case."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sandbox import snapshot
from sandbox.app import create_app
from sandbox.state import SandboxState


def _state() -> SandboxState:
    state = SandboxState()
    create_app(state)
    state.seed()
    return state


def _measure(label: str, state: SandboxState, directory: Path) -> None:
    keeper = snapshot.SnapshotKeeper(state, directory)
    started = time.perf_counter()
    blob = snapshot.capture(state)
    captured = time.perf_counter()
    snapshot.write_atomically(keeper.path, blob)
    written = time.perf_counter()
    again = snapshot.capture(state)  # what each 1 s tick costs when nothing changed
    unchanged = time.perf_counter()
    fresh = SandboxState()
    create_app(fresh)
    loaded = time.perf_counter()
    assert snapshot.SnapshotKeeper(fresh, directory).load() and again == blob
    restored = time.perf_counter()
    print(
        f"{label:32} {len(blob) / 1024:8.0f} KiB  capture {1000 * (captured - started):6.1f} ms"
        f"  write+fsync {1000 * (written - captured):6.1f} ms"
        f"  unchanged tick {1000 * (unchanged - written):6.1f} ms"
        f"  restore {1000 * (restored - loaded):6.1f} ms"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = _state()
        _measure("seeded", state, Path(tmp))
        state.generate("bills", 1000)
        state.generate("vendors", 1000)
        _measure("seeded +1,000 bills +1,000 vendors", state, Path(tmp))


if __name__ == "__main__":
    main()
