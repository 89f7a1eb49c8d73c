"""The console in headless Chromium: `ledger serve` on a fresh SQLite file, driven by playwright-core.

Needs Debian's `chromium` (/usr/bin/chromium) and `npm ci` in tests/browser; a missing browser
FAILS the test (it is never skipped). Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from adapters.channels import ChannelPolicy
from adapters.config import Settings
from bootstrap import bootstrap
from ledger import commands as c

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CHROMIUM = os.environ.get("LEDGER_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "artifacts" / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tools() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: apt-get install -y nodejs npm")
    if not (HERE / "node_modules" / "playwright-core").exists():
        npm = shutil.which("npm") or pytest.fail("npm is missing: apt-get install -y npm")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=300)
    return node


def seed(url: str) -> dict[str, str]:
    """Stock at a warehouse and a store, an order, an item mapping; returns keys and names."""
    container = bootstrap(Settings(database_url=url))
    try:
        keys = container.keys
        names = {
            "admin": keys.create("browser-admin", ["admin"])[1],
            "auditor": keys.create("browser-auditor", ["audit:read"])[1],
            "ingest": keys.create("browser-ingest", ["ingest:write"])[1],
            "sku": "TEE-" + uuid.uuid4().hex[:6].upper(),
            "warehouse": "WH1",
            "store_location": "STORE-CITY",
            "store_code": "S-" + uuid.uuid4().hex[:4],
            "item": "POS-" + uuid.uuid4().hex[:4],
            "order": "1001" + uuid.uuid4().hex[:4],
        }
        channels = container.channels
        channels.put(ChannelPolicy(channel="web", locations=(names["warehouse"],), safety_stock=2), "seed")
        channels.put(ChannelPolicy(channel="store", locations=(names["store_location"],)), "seed")
        led = container.ledger
        led.execute(
            c.ReceiveStock(
                sku=names["sku"],
                location=names["warehouse"],
                quantity=20,
                reference="po-1",
                cause={"source": "seed", "correlation_id": "po-1"},
            )
        )
        led.execute(
            c.ReceiveStock(
                sku=names["sku"],
                location=names["store_location"],
                quantity=6,
                reference="po-2",
                cause={"source": "seed"},
            )
        )
        led.execute(
            c.CaptureOrder(
                order_id=names["order"],
                channel="web",
                lines=({"line_id": "1", "sku": names["sku"], "quantity": 3},),
                external_refs={"name": "#1001"},
                cause={"source": "seed"},
            )
        )
        container.mappings.set("pos", "sku", names["item"], names["sku"], "seed")
        return names
    finally:
        container.close()


def wait(check, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_console_in_a_real_browser(tmp_path: Path):
    node = tools()
    url = f"sqlite:///{tmp_path}/ledger.db"
    names = seed(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LEDGER_DATABASE_URL": url, "LEDGER_NATS_URL": ""}
    ledger = str(Path(sys.executable).with_name("ledger"))
    server = subprocess.Popen(
        [ledger, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=open(tmp_path / "server.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        client = httpx.Client(base_url=base, timeout=10)
        wait(lambda: client.get("/healthz").status_code == 200, "ledger serve")
        batch = {
            "store": names["store_code"],
            "batch_id": "b-1",
            "sequence": 1,
            "transactions": [
                {
                    "txn_id": "t-1",
                    "type": "sale",
                    "occurred_at": "2024-05-01T10:00:00Z",
                    "lines": [{"item": names["item"], "quantity": 2}],
                }
            ],
        }
        r = client.post("/v1/pos/batches", json=batch, headers={"Authorization": f"Bearer {names['ingest']}"})
        assert r.status_code in (200, 201, 202), r.text
        parked_id = r.json()["inbox_id"]
        audit = {"Authorization": f"Bearer {names['admin']}"}
        wait(
            lambda: client.get(f"/v1/inbox/{parked_id}", headers=audit).json()["status"] == "parked",
            "parking",
        )
        wait(
            lambda: all(
                p["lag_positions"] == 0 for p in client.get("/v1/projections", headers=audit).json()["items"]
            ),
            "projections",
        )
        SHOTS.mkdir(parents=True, exist_ok=True)
        config = {
            "base": base,
            "chromium": CHROMIUM,
            "screenshots": str(SHOTS),
            "admin": names["admin"],
            "auditor": names["auditor"],
            "sku": names["sku"],
            "parked_id": parked_id,
            "store_location": names["store_location"],
        }
        (tmp_path / "drive.json").write_text(json.dumps(config))
        run = subprocess.run(
            [node, str(HERE / "drive.mjs"), str(tmp_path / "drive.json")],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=180,
        )
        lines = [x for x in run.stdout.splitlines() if x.startswith("{")]
        seen = json.loads(lines[-1]) if lines else {}
        assert run.returncode == 0 and "error" not in seen, (seen.get("error"), run.stderr[-2000:])

        assert seen["who"].startswith("browser-admin")
        assert seen["chart_lines"] and all(d.startswith("M") and "H" in d for d in seen["chart_lines"])
        assert seen["chart_width"] > 300
        assert ["web", str(20 - 3 - 2)] in seen["ats"] and ["store", "6"] in seen["ats"]
        assert "position" in seen["tip"]
        assert seen["event_order"] == seen["order_id"] == names["order"] and seen["stage"] == "reserved"
        assert "1 parked message(s) applied" in seen["notice"] and seen["parked_status"] == "applied"
        assert seen["posted"]
        assert seen["auditor"].startswith("browser-auditor")
        assert seen["rebuild_disabled"]
        assert seen["refused_status"] == 403 and "admin scope" in seen["refused_text"]
        assert seen["outside_requests"] == []
        for name in ("01-home", "02-sku", "03-order", "04-mapped", "05-refused"):
            assert (SHOTS / f"{name}.png").stat().st_size > 5_000
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
