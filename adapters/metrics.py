"""Prometheus metrics, defined once; every component imports the ones it feeds."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_LATENCY = Histogram(
    "ledger_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter(
    "ledger_events_appended_total", "Events appended, by type", ["type"], registry=REGISTRY
)
COMMANDS = Counter(
    "ledger_commands_total", "Commands decided, by type and result", ["type", "result"], registry=REGISTRY
)
BATCH_SIZE = Histogram(
    "ledger_write_batch_size",
    "Commands per group-commit batch",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
PROJECTION_LAG_POSITIONS = Gauge(
    "ledger_projection_lag_positions", "Projection lag in positions", ["projection"], registry=REGISTRY
)
PROJECTION_LAG_SECONDS = Gauge(
    "ledger_projection_lag_seconds", "Projection lag in seconds", ["projection"], registry=REGISTRY
)
PROJECTION_POSITION = Gauge(
    "ledger_projection_position", "Last applied ledger position", ["projection"], registry=REGISTRY
)
LOG_LINES_DROPPED = Counter(
    "ledger_log_lines_dropped_total", "Log lines dropped because the log queue was full", registry=REGISTRY
)
OUTBOX_DEPTH = Gauge("ledger_outbox_depth", "Messages waiting in the outbox", registry=REGISTRY)
NATS_PUBLISHED = Counter("ledger_nats_published_total", "Messages published to NATS", registry=REGISTRY)
NATS_PUBLISH_FAILURES = Counter(
    "ledger_nats_publish_failures_total", "Failed NATS publishes", registry=REGISTRY
)
INBOX_MESSAGES = Counter(
    "ledger_inbox_messages_total",
    "Inbound messages, by source and status",
    ["source", "status"],
    registry=REGISTRY,
)
PARKED_MESSAGES = Gauge(
    "ledger_parked_messages", "Inbound messages parked for a missing mapping", ["source"], registry=REGISTRY
)
EXCEPTIONS_OPEN = Gauge("ledger_exceptions_open", "Open exceptions, by kind", ["kind"], registry=REGISTRY)
ERP_POSTINGS = Counter(
    "ledger_erp_postings_total", "ERP posting attempts, by result", ["result"], registry=REGISTRY
)
ERP_QUEUE_DEPTH = Gauge(
    "ledger_erp_queue_depth", "Documents waiting to be posted to the ERP", registry=REGISTRY
)
LEADER = Gauge(
    "ledger_leader",
    "1 while this process runs the task as the elected leader of the processes sharing the database",
    ["task"],  # not `job`: Prometheus's own target label
    registry=REGISTRY,
)
