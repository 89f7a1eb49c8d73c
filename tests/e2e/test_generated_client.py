"""A Python client generated from /openapi.json (openapi-python-client) drives the real API over HTTP:
stock received, an order captured, the ATS and the order read back, and a 409 and a 422 parsed as
problems. If generation fails on the document, the document is what needs fixing."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from e2e_api import uid
from live_server import serving

from adapters.config import Settings
from api.app import create_app
from api.problems import TYPE_BASE
from bootstrap import Container, bootstrap

PACKAGE = "ledger_generated_client"


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client generated from the app's own document, importable for this module's tests."""
    import orjson

    root = tmp_path_factory.mktemp("client")
    spec = root / "openapi.json"
    spec.write_bytes(orjson.dumps(create_app().openapi()))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(root / PACKAGE)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # nothing of the document was skipped
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def live(database_url: str) -> Iterator[tuple[str, Container, dict[str, str]]]:
    """A served API over its own database, and a key per scope."""
    from adapters.persistence.urls import ensure_pg_schema, is_postgres

    if is_postgres(database_url):
        ensure_pg_schema(database_url)
    container = bootstrap(Settings(database_url=database_url))
    tokens = {s: container.keys.create(f"client-{s}", [s])[1] for s in ("ats:read", "ingest:write", "admin")}
    try:
        with serving(container) as url:
            yield url, container, tokens
    finally:
        container.close()


def module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_a_generated_client_receives_stock_captures_an_order_and_reads_it_back(client_package, live):
    url, container, tokens = live
    models = module(client_package, "models")
    api = lambda name: module(client_package, f"api.{name}")  # noqa: E731
    keyed = lambda scope: client_package.AuthenticatedClient(base_url=url, token=tokens[scope])  # noqa: E731
    admin, writer, reader = keyed("admin"), keyed("ingest:write"), keyed("ats:read")
    channel, sku, order_id = uid("web-"), uid("SKU-"), uid("o-")

    policy = models.PolicyBody(locations=["WH1"], safety_stock=0)
    put = api("channels.channels_put_channel").sync_detailed(channel, client=admin, body=policy)
    assert put.status_code == 200 and isinstance(put.parsed, models.ChannelPolicy), put.content
    assert put.parsed.locations == ["WH1"]

    receipt = models.Receipt(sku=sku, location="WH1", quantity=10, reference=uid("po-"))
    received = api("stock.stock_receive").sync_detailed(client=writer, body=receipt)
    assert received.status_code == 201, received.content
    assert isinstance(received.parsed, models.StockView) and received.parsed.on_hand == 10

    order = models.NewOrder(
        order_id=order_id, channel=channel, lines=[models.OrderLine(line_id="1", sku=sku, quantity=3)]
    )
    captured = api("orders.orders_capture").sync_detailed(client=writer, body=order)
    assert captured.status_code == 201, captured.content
    view = captured.parsed
    assert isinstance(view, models.OrderView) and view.stage == "reserved"
    assert [(a.location, a.quantity) for a in view.lines[0].allocations] == [("WH1", 3)]

    container.projector.catch_up()
    ats = api("ats.ats_get_ats").sync(channel, sku, client=reader)
    assert isinstance(ats, models.AtsItem), ats
    assert (ats.available, ats.position) == (7, container.projector.head())

    detail = api("orders.orders_order").sync(order_id, client=reader)
    assert isinstance(detail, models.OrderDetail), detail
    assert detail.order_id == order_id and detail.lines[0].shipped == 0 and "ship" in detail.open_

    too_many = models.NewOrder(
        order_id=uid("o-"), channel=channel, lines=[models.OrderLine(line_id="1", sku=sku, quantity=8)]
    )
    refused = api("orders.orders_capture").sync_detailed(client=writer, body=too_many)
    assert refused.status_code == 409 and isinstance(refused.parsed, models.Problem), refused.content
    assert refused.parsed.type_ == TYPE_BASE + "insufficient-stock" and refused.parsed.status == 409
    assert refused.parsed.additional_properties["order_id"] == too_many.order_id  # the problem's own members

    zero = models.Receipt(sku=sku, location="WH1", quantity=0, reference=uid("po-"))
    invalid = api("stock.stock_receive").sync_detailed(client=writer, body=zero)
    assert invalid.status_code == 422 and isinstance(invalid.parsed, models.Problem), invalid.content
    assert invalid.parsed.type_ == TYPE_BASE + "validation-error"
    assert [e.loc for e in invalid.parsed.errors] == [["body", "quantity"]]

    missing = api("orders.orders_order").sync_detailed("no-such-order", client=reader)
    assert missing.status_code == 404 and missing.parsed.type_ == TYPE_BASE + "order-not-found"
