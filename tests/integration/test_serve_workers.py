"""`ledger serve --workers 2` as a real process: two API processes share the port, the background
workers run once (in the supervising process), an order captured over HTTP is read back, and
SIGTERM ends every process cleanly. Waits on conditions, never on a clock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from private_servers import free_port, wait_for

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    """The API processes uvicorn spawned under `pid` (multiprocessing's `spawn_main`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_two_api_processes_serve_one_port_and_stop_cleanly(pg_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env |= {"PYTHONPATH": str(ROOT), "LEDGER_DATABASE_URL": pg_url, "LEDGER_LOG_LEVEL": "WARNING"}
    env["LEDGER_SHOPIFY_WEBHOOK_SECRETS"] = "shpss_workers"
    port = free_port()
    log = open(tmp_path / "serve.err", "wb")  # noqa: SIM115  # closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    children: list[int] = []
    try:
        token = ""
        assert proc.stdout is not None
        for line in proc.stdout:  # the one-time admin key, then the line that says it serves
            if line.startswith("  ") and line.strip():
                token = line.strip()
            if line.startswith("ledger serving on"):
                assert "by 2 API processes" in line, line
                break
        assert token, (tmp_path / "serve.err").read_text()

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.err").read_text()
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 120, "an API process answers /readyz")
        wait_for(lambda: len(_children(proc.pid)) == 2, 120, "two API processes")
        children = _children(proc.pid)

        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            client.put(
                "/v1/channels/online", json={"locations": ["WH-1"], "safety_stock": 0}
            ).raise_for_status()
            receipt = {"sku": "SKU-W", "location": "WH-1", "quantity": 10, "reference": "workers-r1"}
            assert client.post("/v1/stock/receipts", json=receipt).status_code == 201
            order = {
                "order_id": "o-workers-1",
                "channel": "online",
                "lines": [{"line_id": "1", "sku": "SKU-W", "quantity": 3, "location": "WH-1"}],
            }
            captured = client.post("/v1/orders", json=order)
            assert captured.status_code == 201, captured.text
            # Read back on fresh connections, which either API process may accept.
            for _ in range(6):
                with httpx.Client(base_url=base, headers=auth, timeout=30) as fresh:
                    got = fresh.get("/v1/orders/o-workers-1")
                    assert got.status_code == 200, got.text
                    assert got.json()["order_id"] == "o-workers-1"
            # The projection runner runs once, in the supervising process: the ATS follows the order.
            wait_for(
                lambda: client.get("/v1/ats/online/SKU-W").json().get("available") == 7,
                60,
                "the ATS read model follows the captured order",
            )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
        log.close()
    assert code == 0, (tmp_path / "serve.err").read_text()[-3000:]
    assert not [pid for pid in children if _alive(pid)]
    assert "Traceback" not in (tmp_path / "serve.err").read_text()
