"""The Zoho demo script in docs/sandbox.md runs against a real sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox.server import SandboxServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"


def test_docs_demo_script_runs(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOC.read_text().split("<!-- zoho-demo -->", 1)[1]
    script = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("SANDBOX_URL", sandbox.url)
    exec(compile(script, "docs-zoho-demo", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "call 101: 429" in out and "unbalanced: 400" in out
