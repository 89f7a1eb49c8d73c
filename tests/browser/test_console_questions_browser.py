"""The four questions of the console, each walked in headless Chromium by an auditor (playwright-core
over Debian's chromium, as `test_console_browser.py`): why is ATS 7 for a SKU on online, what
happened to order 1001, which orders are stuck and why, what drifted and why.

One `ledger serve` over a seeded SQLite file serves the four walks. Each walk saves its
screenshots to the test's own directory (`tmp_path/screenshots`, kept by pytest for the last
runs) so a person can check them; the assertions are on what the page said, never on pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_console_browser import CHROMIUM, HERE, free_port, tools, wait

from adapters.channels import ChannelPolicy
from adapters.config import Settings
from bootstrap import bootstrap
from ledger import commands as c


def seed(url: str) -> dict[str, Any]:
    """A SKU whose online ATS is 7 (14 received, order 1001… reserves 4 and order 1002… 1, safety
    stock 2); 1001 posted to the ERP, 1002 refused by it three times (stuck once the service's
    sweeper runs past its deadline)."""
    container = bootstrap(Settings(database_url=url))
    try:
        suffix = uuid.uuid4().hex[:4].upper()
        names: dict[str, Any] = {
            "auditor": container.keys.create("night-auditor", ["audit:read"])[1],
            "admin": container.keys.create("ops-admin", ["admin"])[1],
            "ingest": container.keys.create("shop-bridge", ["ingest:write"])[1],
            "sku": f"TEE-BLK-M-{suffix}",
            "warehouse": "WH-EAST",
            "order": f"1001{suffix}",
            "order_name": f"#1001-{suffix}",
            "stuck_order": f"1002{suffix}",
        }
        container.channels.put(
            ChannelPolicy(channel="online", locations=(names["warehouse"],), safety_stock=2), "ops-lead"
        )
        led = container.ledger
        cause = {"source": "seed", "correlation_id": "po-77"}
        led.execute(
            c.ReceiveStock(
                sku=names["sku"], location=names["warehouse"], quantity=14, reference="po-77", cause=cause
            )
        )
        # the as-of picker takes whole seconds: the orders come after the next one begins. It is
        # never a whole minute, which Chromium shows without its ":00" (a value `fill` refuses).
        before = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        if before.second == 0:
            before += timedelta(seconds=1)
        names["before_order"] = before.strftime("%Y-%m-%dT%H:%M:%S")
        while datetime.now(UTC) <= before:
            time.sleep(0.05)
        for oid, qty, refs in (
            (names["order"], 4, {"name": names["order_name"]}),
            (names["stuck_order"], 1, {}),
        ):
            led.execute(
                c.CaptureOrder(
                    order_id=oid,
                    channel="online",
                    lines=({"line_id": "1", "sku": names["sku"], "quantity": qty},),
                    external_refs=refs,
                    cause={"source": "seed", "correlation_id": oid},
                )
            )
        led.execute(
            c.RecordErpPosting(
                order_id=names["order"], document="sales-order", attempts=1, erp_reference="SO-5501"
            )
        )
        for attempt in (1, 2, 3):
            led.execute(
                c.RecordErpFailure(
                    order_id=names["stuck_order"],
                    document="sales-order",
                    attempt=attempt,
                    error="credit hold on the account",
                )
            )
        return names
    finally:
        container.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    node = tools()
    root = tmp_path_factory.mktemp("console-questions")
    url = f"sqlite:///{root}/ledger.db"
    names = seed(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # an order not posted to the ERP within a second is stuck (no ERP is configured)
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": url,
        "LEDGER_NATS_URL": "",
        "LEDGER_ERP_POSTING_DEADLINE_SECONDS": "1",
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("ledger")), "serve", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=open(root / "server.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        client = httpx.Client(base_url=base, timeout=10)
        wait(lambda: client.get("/healthz").status_code == 200, "ledger serve")
        ingest = {"Authorization": f"Bearer {names['ingest']}"}
        audit = {"Authorization": f"Bearer {names['auditor']}"}
        admin = {"Authorization": f"Bearer {names['admin']}"}
        r = client.post(
            f"/v1/orders/{names['order']}/shipments",
            json={"shipment_id": "ship-1", "lines": [{"line_id": "1", "quantity": 1}]},
            headers=ingest,
        )
        assert r.status_code == 201, r.text
        # on hand 13 after the shipment, 4 still reserved: an ERP that counts only free units says 9
        r = client.post(
            "/v1/reconciliations",
            json={
                "source": "erp",
                "observed_at": datetime.now(UTC).isoformat(),
                "levels": [{"sku": names["sku"], "location": names["warehouse"], "quantity": 9}],
            },
            headers=audit,
        )
        assert r.status_code == 200 and r.json()["mismatches"], r.text
        names["run"] = r.json()["id"]
        names["run_explanation"] = r.json()["mismatches"][0]["explanation"]
        wait(
            lambda: (
                [
                    x["key"]
                    for x in client.get("/v1/exceptions?kind=stuck-order", headers=audit).json()["items"]
                ]
                == [names["stuck_order"]]
            ),
            "the stuck order",
        )
        wait(
            lambda: all(
                p["lag_positions"] == 0 for p in client.get("/v1/projections", headers=admin).json()["items"]
            ),
            "projections",
        )
        yield {"node": node, "base": base, "url": url, "names": names}
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def walk(served: dict[str, Any], question: str, tmp_path: Path) -> dict[str, Any]:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    names = served["names"]
    config = {
        "base": served["base"],
        "chromium": CHROMIUM,
        "screenshots": str(shots),
        **{k: names[k] for k in ("auditor", "sku", "order", "order_name", "stuck_order", "before_order")},
    }
    (tmp_path / "walk.json").write_text(json.dumps(config))
    run = subprocess.run(
        [served["node"], str(HERE / "questions.mjs"), str(tmp_path / "walk.json"), question],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [x for x in run.stdout.splitlines() if x.startswith("{")]
    seen = json.loads(lines[-1]) if lines else {}
    assert run.returncode == 0 and "error" not in seen, (
        seen.get("failed_at"),
        seen.get("error"),
        run.stderr[-2000:],
    )
    assert seen["who"].startswith("night-auditor") and seen["outside_requests"] == []
    for png in shots.glob("*.png"):  # a blank page is a few hundred bytes
        assert png.stat().st_size > 5_000, png
    print(f"screenshots of {question}: {shots}")
    return seen


def test_why_is_the_ats_7_for_a_sku_on_online(served: dict[str, Any], tmp_path: Path):
    names = served["names"]
    seen = walk(served, "ats", tmp_path)
    assert seen["ats"] == "7" and seen["why_title"] == "Why online shows 7"
    terms = " | ".join(seen["why_terms"])
    assert "WH-EAST: on hand 13 − reserved 4 − unavailable 0" in terms and "safety stock (default) 2" in terms
    assert any(f"Reserved 4 for order {names['order']} line 1 at WH-EAST" in t for t in seen["timeline"])
    assert any(f"Sold 1 at WH-EAST for order {names['order']}" in t for t in seen["timeline"])
    assert "API request by shop-bridge" in seen["causes"]  # the key's name, not its id
    assert names["before_order"] in seen["as_of_note"] and seen["ats_then"] == "12"


def test_what_happened_to_order_1001(served: dict[str, Any], tmp_path: Path):
    names = served["names"]
    seen = walk(served, "order", tmp_path)
    assert seen["order_id"] == names["order"] and seen["stage"] == "partially_shipped"
    story = " | ".join(reversed(seen["events"]))  # oldest first, as the order lived it
    assert (
        story.index(f"Captured order {names['order']} on channel online")
        < story.index("Posted sales-order to the ERP after 1 attempt(s), ERP reference SO-5501")
        < story.index("Shipped 1 (shipment ship-1)")
    )
    assert "API request by shop-bridge" in seen["causes"] and "ship" in seen["open_work"]
    assert seen["followed_to"] == names["sku"]


def test_which_orders_are_stuck_and_why(served: dict[str, Any], tmp_path: Path):
    names = served["names"]
    seen = walk(served, "stuck", tmp_path)
    assert len(seen["stuck"]) == 1 and names["stuck_order"] in seen["stuck"][0]
    assert "the ERP refused sales-order 3 time(s), last with “credit hold on the account”" in seen["stuck"][0]
    assert seen["rebuild_disabled"] and "needs the admin scope" in seen["admin_reason"]
    assert seen["badge"] == "stuck" and "credit hold on the account" in seen["reason"]
    assert [names["stuck_order"], True] in seen["listed"]
    assert all(flag == (oid == names["stuck_order"]) for oid, flag in seen["listed"])


def test_what_drifted_and_why(served: dict[str, Any], tmp_path: Path):
    names = served["names"]
    seen = walk(served, "drift", tmp_path)
    assert any(
        f"erp counts 9 on_hand of {names['sku']} at WH-EAST; the ledger had 13 (-4)" in d
        for d in seen["drift"]
    )
    assert "1 mismatch(es)" in seen["summary"] and "observed at" in seen["summary"]
    assert names["run_explanation"] in seen["mismatches"][0]
    hrefs = [h for _, h in seen["evidence"]]
    assert f"/console/orders/{names['order']}" in hrefs and f"/console/orders/{names['stuck_order']}" in hrefs
    assert seen["followed_to"] == names["order"]
