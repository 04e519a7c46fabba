"""Event Subscription Service v4: webhook subscriptions and signed ``statusChanged`` delivery.

Subscriptions belong to the application (App JWT from ``client_credentials``); at most five per
application. ``companyIds`` lists the companies connected to the app, i.e. those that completed
the company bootstrap (SAP's sample "activates" a subscription that way); seeded companies start
connected. Events are POSTed at least once through the shared deliverer, which retries on 5xx,
401, 403, 429 and I/O errors, each attempt carrying the same body and ``Concur-Signature``.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from sandbox.concur import config, signing
from sandbox.concur.errors import PLATFORM, ConcurError
from sandbox.concur.store import ConcurStore, Subscription, iso_z

SUBSCRIPTION_ID_RE = re.compile(r"^[a-z0-9.\-]+$")
KNOWN_TOPICS = (config.ESS_TOPIC,)
# Some doc samples drop the ``public.`` prefix; a subscription to either name receives events.
_TOPIC_ALIASES = {config.ESS_TOPIC, "concur.expense.report"}
DELIVERY_ATTEMPTS = 5


def _bad(message: str, error_id: str = "validation.error", status: int = 400) -> ConcurError:
    return ConcurError(status, message, family=PLATFORM, error_id=error_id)


def render_subscription(store: ConcurStore, sub: Subscription) -> dict[str, Any]:
    return {
        "applicationId": sub.application_id,
        "companyIds": sorted(c.id for c in store.companies.values() if c.connected),
        "filter": sub.filter,
        "groups": list(sub.groups),
        "id": sub.id,
        "scope": config.APP_SCOPES,
        "topic": sub.topic,
        "webHookConfig": {"endpoint": sub.endpoint},
    }


def put_subscription(store: ConcurStore, body: Any, now: float) -> dict[str, Any]:
    """``PUT /events/v4/subscriptions/webhook``: create or update (there is no POST)."""
    if not isinstance(body, dict):
        raise _bad("Request body must be a JSON object")
    missing = [f for f in ("id", "topic", "webHookConfig") if not body.get(f)]
    if missing:
        raise _bad(f"Missing required field(s): {', '.join(missing)}")
    sub_id = str(body["id"])
    if not SUBSCRIPTION_ID_RE.match(sub_id):
        raise _bad("id may contain only lowercase letters, digits, '.' and '-'")
    topic = str(body["topic"])
    if topic not in _TOPIC_ALIASES:
        raise _bad(f"Unknown topic {topic}", status=404, error_id="topic.not.found")
    hook = body["webHookConfig"]
    endpoint = hook.get("endpoint") if isinstance(hook, dict) else None
    if not endpoint or not str(endpoint).startswith(("http://", "https://")):
        raise _bad("webHookConfig.endpoint must be an absolute URL")
    flt = body.get("filter") or ".*"
    try:
        re.compile(flt)
    except re.error as exc:
        raise _bad(f"filter is not a valid regular expression: {exc}") from exc
    existing = store.subscriptions.get(sub_id)
    if existing is None and len(store.subscriptions) >= config.ESS_MAX_SUBSCRIPTIONS:
        raise _bad(
            f"An application may have at most {config.ESS_MAX_SUBSCRIPTIONS} subscriptions",
            error_id="subscription.limit.reached",
        )
    store.subscriptions[sub_id] = Subscription(
        id=sub_id,
        topic=topic,
        filter=flt,
        endpoint=str(endpoint),
        application_id=config.APP_ID,
        created_at=existing.created_at if existing else now,
    )
    if existing is None:
        store.record_created("subscription", None, sub_id, endpoint=str(endpoint))
    return {"message": f"Subscription '{sub_id}' saved successfully"}


def get_subscription(store: ConcurStore, sub_id: str) -> dict[str, Any]:
    sub = store.subscriptions.get(sub_id)
    if sub is None:
        raise _bad(f"Subscription '{sub_id}' not found", "subscription.not.found", 404)
    return render_subscription(store, sub)


def delete_subscription(store: ConcurStore, sub_id: str) -> dict[str, Any]:
    if store.subscriptions.pop(sub_id, None) is None:
        raise _bad(f"Subscription '{sub_id}' not found", "subscription.not.found", 404)
    return {"message": f"Subscription '{sub_id}' marked for deletion"}


def publish(
    store: ConcurStore,
    deliverer: Any,
    facts: dict[str, Any],
    now: float,
    event_type: str = "statusChanged",
) -> list[dict[str, Any]]:
    """Build the event once per subscription and hand it to the deliverer, signed."""
    company = store.company(facts["companyId"])
    sent: list[dict[str, Any]] = []
    correlation = str(uuid.uuid4())
    for sub in list(store.subscriptions.values()):
        if sub.topic not in _TOPIC_ALIASES:
            continue
        if company is None or not company.connected:
            continue
        if not re.fullmatch(sub.filter, event_type):
            continue
        event = {
            "id": str(uuid.uuid4()),
            "correlationId": correlation,
            "route": "stable",
            "topic": config.ESS_TOPIC,
            "eventType": event_type,
            "timeStamp": iso_z(now),
            "facts": facts,
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Concur-Signature": signing.sign_event(body),
            "Concur-Correlationid": correlation,
            "User-Agent": "SAP-Concur-ESS-Sandbox",
        }
        delivery_id = deliverer.submit(
            sub.endpoint,
            body,
            headers,
            attempts=DELIVERY_ATTEMPTS,
            meta={"vendor": "concur", "event_id": event["id"], "subscription": sub.id},
        )
        record = {"subscription": sub.id, "delivery_id": delivery_id, "event": event}
        store.events.append(record)
        sent.append(record)
    return sent
