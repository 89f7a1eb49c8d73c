"""`/readyz` names each dependency `ok`, `degraded` or `not-configured`; a NATS server list that no
server answers is logged with its reason, and publishing starts once one of them is up."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from private_servers import free_port, wait_for
from test_nats_relay import start_nats

from adapters.config import Settings
from api.app import create_app
from bootstrap import Container, bootstrap

with warnings.catch_warnings():  # starlette 1.x prefers httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@contextmanager
def app(url: str, **settings: str) -> Iterator[tuple[TestClient, Container]]:
    container = bootstrap(Settings(database_url=url, **settings))  # type: ignore[arg-type]  # settings by keyword
    try:
        with TestClient(create_app(container=container, run_workers=False)) as client:
            yield client, container
    finally:
        container.close()


def checks(client: TestClient) -> dict[str, str]:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    return dict(r.json()["checks"])


def test_unset_urls_are_not_configured(sqlite_url):
    with app(sqlite_url) as (client, _):
        got = checks(client)
    assert got["database"] == "ok"
    assert got["nats"] == "not-configured" and got["erp"] == "not-configured"
    assert got["projections"] == "ok"


def test_an_erp_url_is_ok_until_its_breaker_opens(sqlite_url):
    with app(sqlite_url, erp_url=f"http://127.0.0.1:{free_port()}") as (client, container):
        assert checks(client)["erp"] == "ok"
        breaker = container.erp_poster.breaker
        while breaker.state != "open":
            breaker.failure()
        assert checks(client)["erp"] == "degraded"


def test_a_server_list_nobody_answers_is_degraded_and_logged_then_ok_when_one_is_up(
    sqlite_url, tmp_path, caplog
):
    down, later = free_port(), free_port()
    servers = f"nats://127.0.0.1:{down}, nats://127.0.0.1:{later}"
    with app(sqlite_url, nats_url=servers) as (client, container):
        publisher = container.publisher
        assert publisher.servers == [f"nats://127.0.0.1:{down}", f"nats://127.0.0.1:{later}"]
        assert checks(client)["nats"] == "ok"  # this process does not relay (serve --no-workers)
        caplog.set_level(logging.WARNING, logger="ledger.nats")
        publisher.start()
        server = None
        try:
            assert checks(client)["nats"] == "degraded"
            wait_for(
                lambda: any("cannot publish to NATS at" in r.getMessage() for r in caplog.records),
                30,
                "the connect failure is logged",
            )
            line = next(r.getMessage() for r in caplog.records if "cannot publish" in r.getMessage())
            assert f"127.0.0.1:{down}" in line and f"127.0.0.1:{later}" in line
            assert "Error" in line  # the reason, e.g. ConnectionRefusedError: ...
            server = start_nats(later, str(tmp_path / "js"))
            wait_for(lambda: checks(client)["nats"] == "ok", 60, "the relay connects once a server is up")
            assert publisher.connected_url == f"nats://127.0.0.1:{later}"
        finally:
            publisher.stop()
            if server is not None:
                server.terminate()
                server.wait(10)
