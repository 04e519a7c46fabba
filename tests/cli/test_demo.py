"""``connector demo`` from a fresh directory with nothing running: it starts the stack on the
embedded default (sandbox, web, worker + beat) in a temporary var dir, pushes a vendor, a bill
and an approved expense report through the real pipeline, prints the table and exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_demo_constants_are_the_sandbox_seed() -> None:
    from cli import demo
    from sandbox.concur import config as concur_config
    from sandbox.zoho import seed as zoho_seed

    assert demo.ZOHO_ORG == zoho_seed.MAIN_ORG_ID
    assert demo.CONCUR_COMPANY == concur_config.SEED_US_COMPANY_ID
    assert demo.CONCUR_REQUEST_TOKEN == concur_config.SEED_US_REQUEST_TOKEN
    assert demo.RULES_FILE.is_file() and set(demo.demo_rules()) == {
        "vendors",
        "payables",
        "expenses",
    }


def test_table_and_new_duplicates() -> None:
    from cli import demo

    rows = [
        demo.Row("bill B-1", "payables", "bill:1", record_id=7, state="posted", target_id="PR1",
                 api_calls=2),
        demo.Row("report R", "expenses", "R", record_id=8, state="waiting", api_calls=4,
                 error="account 'X' not found"),
    ]  # fmt: skip
    text = demo.table(rows).splitlines()
    assert text[0].split() == ["record", "flow", "what", "state", "target", "id", "API", "calls"]
    assert text[2].split() == ["7", "payables", "bill", "B-1", "posted", "PR1", "2"]
    assert text[-1] == "  report R: account 'X' not found"
    seeded = {"concur": {"vendor_names": [{"VendorName": "vandelay industries"}]}}
    assert demo.new_duplicates(seeded, seeded) == []
    after = {"concur": {"vendor_names": [{"VendorName": "vandelay industries"}],
                        "payment_requests": [{"InvoiceNumber": "B-1"}]}}  # fmt: skip
    assert demo.new_duplicates(seeded, after) == [
        'concur payment_requests: {"InvoiceNumber": "B-1"}'
    ]


@pytest.mark.slow
def test_connector_demo_completes_every_flow(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "DATABASE_", "REDIS_", "ZOHO_", "CONCUR_"))
    }
    env["TMPDIR"] = str(tmp_path)  # where the demo's own var dir goes (and is removed)
    demo = subprocess.run(
        [str(Path(sys.executable).parent / "connector"), "demo", "--timeout", "120"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert re.search(r"record\s+flow\s+what\s+state\s+target id\s+API calls", out), out
    rows = {
        flow: line
        for line in out.splitlines()
        for flow in ("vendors", "payables", "expenses")
        if re.match(rf"\d+\s+{flow}\s", line)
    }
    assert set(rows) == {"vendors", "payables", "expenses"}, out
    assert all(" posted " in line for line in rows.values()), out
    assert re.search(r"vendors\s+vendor Demo Supplies \w+\s+posted\s+DEMO\w+/MAIN\s+\d+", out)
    assert re.search(r"payables\s+bill DEMO-\w+\s+posted\s+\S+\s+[1-9]\d*$", rows["payables"])
    assert re.search(r"expenses\s+expense report \w+\s+posted\s+\d+\s+[1-9]\d*$", rows["expenses"])
    assert "every flow completed" in out and "no duplicates" in out
    assert "Traceback" not in out + demo.stderr
    # Nothing left behind: no var/ in the working directory, the temporary stack removed.
    assert not (tmp_path / "var").exists()
    assert not list(tmp_path.glob("connector-demo-*"))
