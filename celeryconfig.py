"""Celery settings, derived from ``connector.config.Settings`` (the one reader of the environment).

Every choice here is about not losing or doubling work (celery-reliability §0):

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task killed mid-run is redelivered
  rather than lost; the ledger's lease and the post protocol make the second run safe.
- ``worker_prefetch_multiplier = 1``: a worker holds at most one waiting message per process, so
  a rate-limited backlog does not sit in one worker's buffer while others idle.
- ``visibility_timeout``: deliberately larger than the longest task run plus the longest
  countdown we ever schedule (back-off caps at 300 s); longer waits live in the database.
- Per-queue ``rate_limit`` annotations are per-worker ceilings only. The per-tenant limit that
  the vendors enforce is the shared Redis limiter (``connector.limits.ratelimit``; docs/rate-limits.md).
"""

from __future__ import annotations

from kombu import Queue

from connector.config import get_settings

_settings = get_settings()

QUEUES = ("zoho", "concur", "default")
#: The sweeper, token refresh and alerts: the back-stops get a queue of their own so they never
#: wait behind the backlog they exist to rescue (issue #21: after an outage the default queue holds
#: every relayed event and poll, and a sweep queued behind them expired unrun). Kombu's Redis
#: transport rotates the queues a worker consumes, so a sweep is taken within one message per queue.
MAINTENANCE_QUEUE = "maintenance"
#: What every worker consumes (Procfile, ``connector run``, tests, benchmarks).
WORKER_QUEUES = (*QUEUES, MAINTENANCE_QUEUE)
STEPS = ("fetch", "map", "validate", "post", "audit")

broker_url = _settings.broker_url
result_backend = _settings.result_backend
task_ignore_result = True  # the ledger, not the result backend, is the record of what happened
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_time_limit = 300
task_soft_time_limit = 240
broker_connection_retry_on_startup = True
if _settings.redis_url:
    broker_transport_options = {"visibility_timeout": _settings.visibility_timeout}
    result_backend_transport_options = {"visibility_timeout": _settings.visibility_timeout}
else:
    # The embedded broker: kombu's SQLAlchemy transport on an SQLite file, polled more often.
    import tasks.embedded_broker  # noqa: F401  (registers the "embedded+sqlite://" transport)
worker_cancel_long_running_tasks_on_connection_loss = True
# With REMAP_SIGTERM=SIGQUIT (Procfile), SIGTERM starts a soft shutdown that requeues late-acked
# messages within Heroku's 30 s grace period instead of waiting out the visibility timeout.
worker_soft_shutdown_timeout = 20
worker_send_task_events = True
worker_hijack_root_logger = False

task_default_queue = "default"
task_queues = tuple(Queue(name) for name in WORKER_QUEUES)
# One task name per (queue, step): Flower shows which vendor a task calls, and the per-queue
# rate_limit annotations below attach to names.
task_routes = {f"pipeline.{queue}.{step}": {"queue": queue} for queue in QUEUES for step in STEPS}
task_routes.update({"maintenance.*": {"queue": MAINTENANCE_QUEUE}})
task_routes.update({"vendors.*": {"queue": "default"}})

_queue_limits = {
    "zoho": _settings.celery_zoho_rate_limit,
    "concur": _settings.celery_concur_rate_limit,
}
task_annotations = {
    f"pipeline.{queue}.{step}": {"rate_limit": limit}
    for queue, limit in _queue_limits.items()
    if limit
    for step in STEPS
}

beat_schedule = {
    "sweep-ledger": {
        "task": "maintenance.sweep",
        "schedule": _settings.sweep_interval,
        "options": {"expires": _settings.sweep_interval},
    },
    # Keep every access token ahead of its expiry (docs/connections.md, "Staying connected").
    "refresh-tokens": {
        "task": "maintenance.refresh_tokens",
        "schedule": _settings.refresh_interval,
        "options": {"expires": _settings.refresh_interval},
    },
    # The expenses back-stop: approved Concur reports listed per connection (docs/expenses.md).
    "poll-expenses": {
        "task": "sync.poll_all",
        "schedule": _settings.expenses_poll_interval,
        "args": ("expenses",),
        "options": {"expires": _settings.expenses_poll_interval},
    },
    # The payables back-stop: bills and invoices by last_modified_time (docs/payables.md).
    "poll-payables": {
        "task": "sync.poll_all",
        "schedule": _settings.payables_poll_interval,
        "args": ("payables",),
        "options": {"expires": _settings.payables_poll_interval},
    },
    # Vendor reconciliation per connection, both ways (docs/vendors.md).
    "reconcile-vendors": {
        "task": "sync.poll_all",
        "schedule": _settings.vendors_sync_interval,
        "args": ("vendors",),
        "options": {"expires": _settings.vendors_sync_interval},
    },
    # The alert digest: needs_reauth, dead and long-waiting records (docs/operations.md).
    "alerts": {
        "task": "maintenance.alerts",
        "schedule": _settings.alert_interval,
        "options": {"expires": _settings.alert_interval},
    },
}
# Beat's schedule file (when each job last ran): CONNECTOR_BEAT_SCHEDULE, default
# <CONNECTOR_VAR_DIR>/celerybeat-schedule. tasks.schedule.Scheduler creates its directory, so the
# Procfile's bare `celery -A tasks beat` starts on a fresh checkout where var/ does not exist yet
# (issue #19). Losing the file is harmless: jobs then start one interval after beat starts.
beat_scheduler = "tasks.schedule:Scheduler"
beat_schedule_filename = str(_settings.beat_schedule_file.resolve())
