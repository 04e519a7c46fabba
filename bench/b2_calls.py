"""B2 API calls per record in steady state (vendors linked, caches warm).

One worker (``--concurrency 2``), sandbox limits off. Vendor links carry the Concur snapshot
(what the vendors flow keeps), so a bill's map needs no lookup. A warm-up batch (20 bills, the
seed's approved reports plus 10 generated ones) runs first so per-process caches (tokens, Zoho
lookups for journals) are filled; then the sandbox's per-endpoint counters are read before and
after each measured batch: ``n`` bills, then ``m`` reports.

Baseline: the minimum possible, one read and one write per record (bill: Zoho GET + Concur POST;
report: one Zoho POST /journals, whose reads are on Concur). Targets: <= 1.05 Zoho and <= 1.05
Concur calls per bill; <= 1.05 Zoho writes per report.
"""

from __future__ import annotations

from typing import Any

from bench import harness as h
from bench.b4_overhead import UNLIMITED

ZOHO = f"zoho:{h.ZOHO_ORG}"
CONCUR = f"concur:{h.CONCUR_COMPANY}"


def _batch(bench: h.Bench, ids: list[int], timeout: float) -> tuple[dict[str, int], dict, dict]:
    before = bench.stats()
    bench.enqueue(ids)
    final = h.wait_done(bench, ids, timeout=timeout)
    after = bench.stats()
    zoho = h.delta(h.tenant_calls(after, ZOHO), h.tenant_calls(before, ZOHO))
    concur = h.delta(h.tenant_calls(after, CONCUR), h.tenant_calls(before, CONCUR))
    return final, zoho, concur


def run(quick: bool = False) -> dict[str, Any]:
    bills, reports = (100, 20) if quick else (500, 100)
    with h.bench_stack("b2", **UNLIMITED) as bench:
        cid = h.connect(bench, expenses=True)
        bench.start_worker("b2-worker", concurrency=2)
        load_before = h.load_average()
        warm = h.generate_bills(bench, cid, 20) + h.generate_reports(bench, cid, 10)
        bench.enqueue(warm)
        h.wait_done(bench, warm, timeout=180)
        bill_ids = h.generate_bills(bench, cid, bills)
        report_ids = h.generate_reports(bench, cid, reports)
        assert len(report_ids) == reports, (len(report_ids), reports)
        b_final, b_zoho, b_concur = _batch(bench, bill_ids, 60 + bills)
        r_final, r_zoho, r_concur = _batch(bench, report_ids, 60 + reports * 2)
        load_after = h.load_average()
    posted_bills, posted_reports = b_final.get("posted", 0), r_final.get("posted", 0)
    zoho_per_bill = sum(b_zoho.values()) / bills
    concur_per_bill = sum(b_concur.values()) / bills
    zoho_writes = sum(v for k, v in r_zoho.items() if not k.startswith("GET "))
    writes_per_report = zoho_writes / reports
    measured = {
        "bills": {
            "posted": posted_bills,
            "zoho_calls": b_zoho,
            "concur_calls": b_concur,
            "zoho_per_bill": round(zoho_per_bill, 3),
            "concur_per_bill": round(concur_per_bill, 3),
        },
        "reports": {
            "posted": posted_reports,
            "zoho_calls": r_zoho,
            "concur_calls": r_concur,
            "zoho_writes_per_report": round(writes_per_report, 3),
            "zoho_calls_per_report": round(sum(r_zoho.values()) / reports, 3),
            "concur_calls_per_report": round(sum(r_concur.values()) / reports, 3),
        },
    }
    worst = max(zoho_per_bill, concur_per_bill, writes_per_report)
    return {
        "id": "B2",
        "what": "API calls per record, steady state",
        "inputs": {"bills": bills, "reports": reports, "worker_concurrency": 2},
        "baseline": {"zoho_per_bill": 1.0, "concur_per_bill": 1.0, "zoho_writes_per_report": 1.0},
        "measured": measured,
        "ratio": round(worst, 3),
        "target": "<= 1.05 Zoho and <= 1.05 Concur calls per bill; <= 1.05 Zoho writes per report",
        "met": zoho_per_bill <= 1.05
        and concur_per_bill <= 1.05
        and writes_per_report <= 1.05
        and posted_bills == bills
        and posted_reports == reports,
        "load_average": {"before": load_before, "after": load_after},
        "summary": {
            "baseline": "1 + 1 per bill; 1 write per report",
            "measured": f"Zoho {zoho_per_bill:.3f}, Concur {concur_per_bill:.3f} per bill; "
            f"{writes_per_report:.3f} Zoho writes per report",
        },
    }
