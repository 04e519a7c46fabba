"""Alerts: one digest of what needs a person, sent when something is new or got worse.

Three conditions (docs/operations.md):

- ``needs_reauth`` — a connection whose credential died (key: connection id). One alert when it
  turns, a reminder while it stays, a "resolved" line when it is reconnected. It never alerts on
  growth: its parked records are a consequence, not news.
- ``dead`` — records whose retries ran out (key: ``<connection id>:<flow>``).
- ``waiting`` — records ``waiting`` longer than ``ALERT_WAITING_AGE`` (same key).
- ``failed_events`` — webhook events intake gave up on after ``INBOX_MAX_ATTEMPTS`` (key:
  ``<source>:<connection id or "unrouted">``), so a stored event that cannot be processed is
  never a silent loop (issue #12.3).

The digest rule, per (kind, key), against the ``alerts`` table: notify when the condition is
**new** (no open row, or never delivered), when it **grew** past the count last notified (a
count that shrinks lowers that baseline, so new trouble after a partial replay is still news),
as a **reminder** once ``ALERT_REMIND_AFTER`` has passed since the last notice, and once when it
is **resolved**. Anything else stays quiet: a retry is never news. One run of the beat task
``maintenance.alerts`` sends at most one message per channel.

Every item is logged (WARNING) whatever channels are configured; then the digest goes to
``ALERT_WEBHOOK_URL`` (Slack-compatible ``{"text": ...}``) and/or by e-mail. If every configured
channel fails, nothing is marked notified and the next run tries again. The text names
connections, flows, counts, error codes and normalized messages only, and goes through the same
redaction as the logs: no token, secret or payload reaches an alert.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector import inbox
from connector.api.redaction import redact
from connector.config import Settings
from connector.db import Database, utcnow
from connector.models import (
    Alert,
    Connection,
    ConnectionStatus,
    RecordState,
    SyncRecord,
    WebhookEvent,
)
from connector.operations import problems as operations_problems

log = logging.getLogger(__name__)

S = RecordState
NEEDS_REAUTH = "needs_reauth"
DEAD = "dead"
WAITING = "waiting"
FAILED_EVENTS = "failed_events"


@dataclass(frozen=True)
class Condition:
    """A problem that holds right now."""

    kind: str
    key: str
    connection_id: int | None
    count: int
    summary: str
    grows: bool = True


@dataclass(frozen=True)
class DigestItem:
    """One line of a digest: ``change`` is ``new``, ``grew``, ``reminder`` or ``resolved``."""

    kind: str
    key: str
    change: str
    count: int
    previous: int
    summary: str

    def line(self) -> str:
        delta = f" (+{self.count - self.previous})" if self.change == "grew" else ""
        return f"[{self.change.upper()}] {self.kind}{delta}: {self.summary}"


# =========================================================================== conditions


def _top_reasons(records: list[SyncRecord], n: int = 3) -> str:
    reasons = Counter(
        (r.last_error_code or "-", operations_problems.normalize_message(r.last_error_message))
        for r in records
    )
    parts = [
        f"{code} x{count}: {msg}" if msg else f"{code} x{count}"
        for (code, msg), count in reasons.most_common(n)
    ]
    return "; ".join(parts)


def current_conditions(
    session: Session, *, waiting_age: dt.timedelta, now: dt.datetime | None = None
) -> list[Condition]:
    now = now or utcnow()
    conditions: list[Condition] = []
    names = dict(session.execute(select(Connection.id, Connection.name)).all())

    for conn in session.execute(
        select(Connection).where(Connection.status == ConnectionStatus.NEEDS_REAUTH.value)
    ).scalars():
        parked = session.execute(
            select(func.count()).where(
                SyncRecord.connection_id == conn.id, SyncRecord.state == S.NEEDS_REAUTH.value
            )
        ).scalar_one()
        reason = f": {conn.status_reason}" if conn.status_reason else ""
        conditions.append(
            Condition(
                NEEDS_REAUTH,
                str(conn.id),
                conn.id,
                max(1, parked),
                f"connection {conn.name!r} needs re-authorization ({parked} record(s) parked)"
                f"{reason}. Fix: {operations_problems.fix_hint(S.NEEDS_REAUTH, None, None, conn)}",
                grows=False,
            )
        )

    dead = session.execute(
        select(SyncRecord).where(SyncRecord.state == S.DEAD.value).order_by(SyncRecord.id)
    ).scalars()
    by_key: dict[tuple[int, str], list[SyncRecord]] = {}
    for r in dead:
        by_key.setdefault((r.connection_id, r.flow), []).append(r)
    for (conn_id, flow), records in sorted(by_key.items()):
        conditions.append(
            Condition(
                DEAD,
                f"{conn_id}:{flow}",
                conn_id,
                len(records),
                f"{names.get(conn_id, conn_id)} / {flow}: {len(records)} dead record(s) "
                f"(e.g. #{records[-1].id}); {_top_reasons(records)}. "
                f"Fix: {operations_problems.fix_hint(S.DEAD, records[-1].last_error_code)} "
                f"Replay: connector replay --state dead --flow {flow}",
            )
        )

    failed: dict[tuple[str, int | None], list[WebhookEvent]] = {}
    for event in inbox.failed_events(session, limit=10_000):
        failed.setdefault((event.source, event.connection_id), []).append(event)
    for (source, conn_id), events in sorted(
        failed.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
    ):
        reasons = Counter(operations_problems.normalize_message(e.note) for e in events)
        top = "; ".join(f"x{n}: {msg}" for msg, n in reasons.most_common(3))
        where = names.get(conn_id, conn_id) if conn_id is not None else "unrouted"
        conditions.append(
            Condition(
                FAILED_EVENTS,
                f"{source}:{conn_id if conn_id is not None else 'unrouted'}",
                conn_id,
                len(events),
                f"{where} / {source} webhooks: {len(events)} event(s) failed after their "
                f"attempts (e.g. #{events[0].id}); {top}. "
                "Replay: celery -A tasks dead retry --all-events (or /ops)",
            )
        )

    waiting = operations_problems.waiting_too_long(session, older_than=waiting_age, now=now)
    for (conn_id, flow), records in sorted(waiting.items()):
        oldest = min((r.waiting_since or r.updated_at) for r in records)
        hours = (now - oldest).total_seconds() / 3600
        conditions.append(
            Condition(
                WAITING,
                f"{conn_id}:{flow}",
                conn_id,
                len(records),
                f"{names.get(conn_id, conn_id)} / {flow}: {len(records)} record(s) waiting longer "
                f"than {_human(waiting_age)} (oldest {hours:.1f} h); {_top_reasons(records)}. "
                f"Fix: {operations_problems.fix_hint(S.WAITING, records[0].last_error_code)}",
            )
        )
    return conditions


def _human(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# =========================================================================== the digest rule


def compute_digest(
    session: Session,
    *,
    waiting_age: dt.timedelta,
    remind_after: dt.timedelta,
    now: dt.datetime | None = None,
) -> list[DigestItem]:
    """What is worth telling now. Updates each row's ``last_seen_at``/``summary`` and lowers
    baselines that shrank; ``mark_notified`` records the delivery."""
    now = now or utcnow()
    conditions = current_conditions(session, waiting_age=waiting_age, now=now)
    rows = {(a.kind, a.key): a for a in session.execute(select(Alert)).scalars()}
    items: list[DigestItem] = []
    seen: set[tuple[str, str]] = set()
    for cond in conditions:
        ident = (cond.kind, cond.key)
        seen.add(ident)
        row = rows.get(ident)
        if row is None:
            row = Alert(
                kind=cond.kind,
                key=cond.key,
                connection_id=cond.connection_id,
                status="open",
                count=0,
                first_seen_at=now,
                last_seen_at=now,
            )
            session.add(row)
            rows[ident] = row
        elif row.status != "open":
            row.status, row.count, row.notified_at, row.resolved_at = "open", 0, None, None
            row.first_seen_at = now
        row.last_seen_at = now
        row.summary = cond.summary
        previous = row.count
        if row.notified_at is None:
            change = "new"
        elif cond.grows and cond.count > previous:
            change = "grew"
        elif now - row.notified_at >= remind_after:
            change = "reminder"
        else:
            change = None
            # Shrinking lowers the baseline, so fresh trouble after a partial fix is news again.
            row.count = min(previous, cond.count)
        if change:
            items.append(
                DigestItem(cond.kind, cond.key, change, cond.count, previous, cond.summary)
            )
    for ident, row in rows.items():
        if ident not in seen and row.status == "open":
            if row.notified_at is None:  # cleared before anyone was told: nothing to say
                row.status, row.resolved_at = "resolved", now
                continue
            items.append(
                DigestItem(
                    row.kind,
                    row.key,
                    "resolved",
                    0,
                    row.count,
                    _resolved_text(row),
                )
            )
    return items


def _resolved_text(row: Alert) -> str:
    what = {
        NEEDS_REAUTH: "connection is connected again",
        DEAD: "no dead records left",
        WAITING: "no record waits too long any more",
        FAILED_EVENTS: "no failed webhook event left",
    }.get(row.kind, "cleared")
    head = (row.summary or "").split(":", 1)[0]
    return f"{head}: {what}"


def mark_notified(
    session: Session, items: list[DigestItem], *, now: dt.datetime | None = None
) -> None:
    now = now or utcnow()
    for item in items:
        row = session.execute(
            select(Alert).where(Alert.kind == item.kind, Alert.key == item.key)
        ).scalar_one_or_none()
        if row is None:
            continue
        row.notified_at = now
        if item.change == "resolved":
            row.status, row.resolved_at, row.count = "resolved", now, 0
        else:
            row.count = item.count


def render(
    items: list[DigestItem], *, now: dt.datetime, ops_url: str | None = None
) -> tuple[str, str]:
    """``(subject, text)`` of one digest; redacted."""
    counts = Counter(i.change for i in items)
    order = ("new", "grew", "reminder", "resolved")
    head = ", ".join(f"{counts[c]} {c}" for c in order if counts[c])
    subject = f"[connector] {len(items)} alert(s): {head}"
    lines = [f"Connector alerts at {now:%Y-%m-%d %H:%M} UTC ({head})"]
    rank = {c: i for i, c in enumerate(order)}
    lines += [f"• {i.line()}" for i in sorted(items, key=lambda i: (rank[i.change], i.kind, i.key))]
    if ops_url:
        lines.append(f"Details and replay: {ops_url}")
    return redact(subject), redact("\n".join(lines))


# =========================================================================== channels


def send_webhook(url: str, text: str, *, timeout: float = 10.0) -> None:
    import requests

    # No redirects: the URL is a secret-bearing webhook and the digest must not go elsewhere.
    response = requests.post(url, json={"text": text}, timeout=timeout, allow_redirects=False)
    if response.is_redirect:
        raise requests.HTTPError(f"alert webhook answered a {response.status_code} redirect")
    response.raise_for_status()


def send_email(settings: Settings, subject: str, text: str, *, timeout: float = 10.0) -> None:
    assert settings.alert_smtp_host and settings.alert_smtp_from and settings.alert_smtp_to
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.alert_smtp_from
    message["To"] = ", ".join(settings.alert_smtp_to)
    message.set_content(text)
    with smtplib.SMTP(settings.alert_smtp_host, settings.alert_smtp_port, timeout=timeout) as smtp:
        if settings.alert_smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.alert_smtp_user:
            smtp.login(settings.alert_smtp_user, settings.alert_smtp_password or "")
        smtp.send_message(message)


def channels(settings: Settings) -> list[str]:
    out = []
    if settings.alert_webhook_url:
        out.append("webhook")
    if settings.alert_smtp_host:
        out.append("email")
    return out


def deliver(settings: Settings, subject: str, text: str) -> dict[str, str]:
    """Send to every configured channel; ``{channel: "ok" | error class}``. Never raises."""
    results: dict[str, str] = {}
    for channel in channels(settings):
        try:
            if channel == "webhook":
                assert settings.alert_webhook_url
                send_webhook(settings.alert_webhook_url, text)
            else:
                send_email(settings, subject, text)
        except Exception as exc:
            # The class only: an SMTP or HTTP error text may echo credentials or the URL's token.
            results[channel] = type(exc).__name__
            log.error("alert channel %s failed: %s", channel, type(exc).__name__)
        else:
            results[channel] = "ok"
    return results


def run(db: Database, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """One digest run (the beat task): compute, log, deliver, record what was delivered."""
    now = now or utcnow()
    with db.session() as session:
        items = compute_digest(
            session,
            waiting_age=dt.timedelta(seconds=settings.alert_waiting_age),
            remind_after=dt.timedelta(seconds=settings.alert_remind_after),
            now=now,
        )
    if not items:
        return {"items": 0, "delivered": {}}
    ops_url = f"{settings.public_url}/ops" if settings.public_url else None
    subject, text = render(items, now=now, ops_url=ops_url)
    for item in items:
        log.warning("alert %s", redact(item.line()))
    results = deliver(settings, subject, text)
    delivered = not results or any(v == "ok" for v in results.values())
    if delivered:
        with db.session() as session:
            mark_notified(session, items, now=now)
    return {"items": len(items), "delivered": results, "text": text, "subject": subject}
