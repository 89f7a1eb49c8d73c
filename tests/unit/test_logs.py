"""Structured logs: personal data and secrets are masked; the access line has ids, never bodies or tokens."""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings

import structlog

from adapters.config import Settings
from adapters.logs import mask, mask_text
from api.app import create_app
from bootstrap import bootstrap

with warnings.catch_warnings():  # starlette 1.x prefers httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_personal_fields_are_masked_at_any_depth() -> None:
    payload = {
        "id": 820982911946154508,
        "email": "ann@example.com",
        "customer": {"first_name": "Ann", "phone": "+44 20 7946 0958"},
        "shipping_address": {"address1": "1 High St", "city": "Leeds"},
        "line_items": [{"sku": "TEE-M", "quantity": 2, "name": "Tee"}],
        "note": "leave at the door",
    }
    masked = mask(payload)
    assert masked["id"] == 820982911946154508
    assert masked["email"] == masked["customer"] == masked["shipping_address"] == masked["note"] == "***"
    assert masked["line_items"][0]["sku"] == "TEE-M" and masked["line_items"][0]["quantity"] == 2
    assert "Ann" not in json.dumps(masked) and "High St" not in json.dumps(masked)


def test_secrets_and_personal_data_inside_free_text_are_masked() -> None:
    text = "call +44 20 7946 0958 or mail ann.lee@example.co.uk with lk_0123456789ab_SECRETsecret-_x"
    out = mask_text(text)
    assert "ann.lee@example.co.uk" not in out and "7946" not in out and "SECRETsecret" not in out
    assert mask({"Authorization": "Bearer lk_x", "X-Shopify-Hmac-Sha256": "abc"}) == {
        "Authorization": "***",
        "X-Shopify-Hmac-Sha256": "***",
    }


def test_the_access_line_has_ids_route_and_status_but_no_body_or_token(json_logs, sqlite_url: str) -> None:
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        _, token = container.keys.create("w", ["ingest:write"])
        app = create_app(container=container, run_workers=False)
        with TestClient(app) as client:
            body = {"sku": "S1", "location": "W1", "quantity": 1, "reference": "ann@example.com"}
            r = client.post(
                "/v1/stock/receipts",
                json=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "X-Correlation-Id": "corr-42",
                    "X-Request-Id": "req-42",
                },
            )
            assert r.status_code == 201
            client.get("/v1/stock/S1/W1")  # 401: no token
    finally:
        container.close()
    err = json_logs.getvalue()
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("logger") == "ledger.access"]
    assert len(access) == 2, err
    post = access[0]
    assert post["method"] == "POST" and post["route"] == "/v1/stock/receipts" and post["status"] == 201
    assert post["request_id"] == "req-42" and post["correlation_id"] == "corr-42"
    assert isinstance(post["ms"], int | float)
    assert access[1]["route"] == "/v1/stock/{sku}/{location}" and access[1]["status"] == 401
    assert token not in err and token.split("_")[1] not in err
    assert "ann@example.com" not in err and '"quantity"' not in err


def test_exception_text_in_logs_is_masked(json_logs: io.StringIO) -> None:
    log = structlog.stdlib.get_logger("ledger.test")
    try:
        raise ValueError("no customer ann@example.com at +44 20 7946 0958")
    except ValueError as e:
        log.error("failed", exc_info=e, email="bob@example.com")
        logging.getLogger("ledger.stdlib").exception("stdlib failed for %s", "carol@example.com")
    out = json_logs.getvalue()
    assert "failed" in out and "ValueError" in out
    for secret in ("ann@example.com", "7946", "bob@example.com", "carol@example.com"):
        assert secret not in out, out


def test_routes_are_labelled_by_template_and_unknown_paths_by_one_label(
    json_logs: io.StringIO, sqlite_url: str
) -> None:
    container = bootstrap(Settings(database_url=sqlite_url))
    try:
        with TestClient(create_app(container=container, run_workers=False)) as client:
            for path in ("/openapi.json", "/healthz", "/no/such/path/1", "/no/such/path/2"):
                client.get(path)
    finally:
        container.close()
    lines = [json.loads(x) for x in json_logs.getvalue().splitlines() if x.startswith("{")]
    routes = [x["route"] for x in lines if x.get("logger") == "ledger.access"]
    assert routes == ["/openapi.json", "/healthz", "unmatched", "unmatched"]


def test_a_stalled_log_stream_drops_and_counts_lines_instead_of_blocking_the_caller() -> None:
    from adapters.logs import configure_logging, dropped_lines, flush_logs, stop_logging

    class Stalled(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()
            self.writing = threading.Event()

        def write(self, s: str) -> int:
            self.writing.set()
            self.release.wait()
            return super().write(s)

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = Stalled()
    configure_logging("INFO", stream=out, queue_size=5)
    log = structlog.stdlib.get_logger("ledger.test")
    try:
        log.info("first")
        assert out.writing.wait(30)  # the listener is stuck writing the first line
        caller = threading.Thread(target=lambda: [log.info("line", n=n) for n in range(50)])
        caller.start()
        caller.join(30)
        assert not caller.is_alive()  # 50 lines logged while nothing could be written
        assert dropped_lines() == 50 - 5  # the queue held 5; the rest were dropped and counted
        out.release.set()
        flush_logs()
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        assert [x["event"] for x in lines] == ["first"] + ["line"] * 5
        assert [x["n"] for x in lines[1:]] == [0, 1, 2, 3, 4]
    finally:
        out.release.set()
        stop_logging()
        root.handlers[:], level = saved[0], saved[1]
        root.setLevel(level)
        structlog.reset_defaults()


def test_stdlib_lines_keep_the_request_context_of_the_thread_that_logged_them(json_logs) -> None:
    with structlog.contextvars.bound_contextvars(request_id="req-7"):
        logging.getLogger("ledger.stdlib").warning("batch of %d not stored", 3)
    line = json.loads(json_logs.getvalue().splitlines()[-1])
    assert line["event"] == "batch of 3 not stored" and line["request_id"] == "req-7"
