"""`ledger worker --metrics-port P` serves the worker's own metrics (lag, outbox) for Prometheus."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
            if "ledger_projection_lag_seconds{" in text:  # the runner has reported its lag
                return text
        except OSError:
            pass
        assert time.monotonic() < deadline, "the worker did not serve its metrics"
        time.sleep(0.1)


def test_the_worker_serves_its_projection_lag_and_outbox_depth(tmp_path):
    port = free_port()
    env = {**os.environ, "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/l.db", "PYTHONPATH": str(ROOT)}
    env.pop("LEDGER_NATS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--metrics-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        text = scrape(port, time.monotonic() + 120)
        assert "ledger_outbox_depth" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_a_busy_metrics_port_fails_the_worker_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/l.db", "PYTHONPATH": str(ROOT)}
        run = subprocess.run(
            [sys.executable, "-m", "cli.main", "worker", "--metrics-port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2
    assert "cannot serve metrics" in run.stderr and "Traceback" not in run.stderr + run.stdout
