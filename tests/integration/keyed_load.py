"""Keyed HTTP write load for the PostgreSQL fault tests: the service in its own process, threads
posting receipts each with its own `Idempotency-Key`, and the checks made after the fault.

`KeyedLoad` records every answer by the phase it was sent in ("before", "down", "after"). After
the fault, `check` asserts the promise of an outage: only 201 or 503 answers (a 503 with
`Retry-After`, as a problem), no dropped connection, every acknowledged receipt stored, every key
usable again (sent once more with its body it answers 2xx, never 409: a replay of its first answer
if that was a 2xx), and the stock equal to each receipt once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from private_servers import free_port, wait_for

from adapters.config import Settings
from adapters.persistence.urls import ledger_env
from bootstrap import bootstrap
from ledger import commands as c
from ledger.service import Ledger

ROOT = Path(__file__).resolve().parents[2]
PLACES = [(f"SKU-F{i % 4}", f"LOC-{i // 4}") for i in range(12)]


class Service:
    """`uvicorn api.app:create_app --factory` in its own process, this checkout's code."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_RUN_WORKERS": "false",
            "LEDGER_LOG_LEVEL": "WARNING",
        }
        env.pop("LEDGER_NATS_URL", None)
        env.pop("LEDGER_ERP_URL", None)
        self.out = open(log, "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"],
            cwd=str(ROOT), env=env, stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        assert self.proc.poll() is None, f"the service exited:\n{self.log_tail()}"
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.out.close()


def answered(
    client: httpx.Client, path: str, name: str, strays: list[str], lock: threading.Lock, **request: Any
) -> httpx.Response | None:
    """One POST of a fault test; None for a transport error, noted in `strays` (the service must
    always answer). A 503 must be a problem with `Retry-After`, so the caller knows to retry."""
    try:
        r = client.post(path, timeout=60, **request)
    except httpx.HTTPError as e:
        with lock:
            strays.append(f"{name}: {type(e).__name__}: {e}")
        return None
    if r.status_code == 503:
        assert r.headers.get("retry-after"), r.text
        assert r.headers.get("content-type") == "application/problem+json", r.headers
    return r


def ingest_token(database_url: str) -> str:
    """Creates the tables and an API key through the same URL the service uses."""
    setup = bootstrap(Settings(database_url=database_url))
    try:
        return setup.keys.create("fault-test", ["ingest:write", "audit:read"])[1]
    finally:
        setup.close()


class KeyedLoad:
    """`threads` writers posting receipts to `service`, each with a fresh Idempotency-Key."""

    def __init__(self, service: Service, token: str, threads: int = 6) -> None:
        self.service = service
        self.headers = {"Authorization": f"Bearer {token}"}
        self.threads = threads
        # key -> (body, [(phase, status)])
        self.sent: dict[str, tuple[dict[str, Any], list[tuple[str, int]]]] = {}
        self.strays: list[str] = []  # transport errors: the service must always answer
        self.lock = threading.Lock()
        self.phase = "before"
        self.resumed_at: float | None = None  # the first 2xx of phase "after"
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._writer, args=(n,), daemon=True) for n in range(threads)
        ]

    def start(self) -> None:
        wait_for(self.service.up, 60, "the service answers")
        for t in self._threads:
            t.start()

    def post(
        self, client: httpx.Client, key: str, body: dict[str, Any], replayed: bool | None = None
    ) -> int | None:
        """Posts one keyed receipt; its status, or None for a transport error (a stray). With
        `replayed`, asserts whether the answer is a replay of the key's first answer."""
        headers = {**self.headers, "Idempotency-Key": key}
        r = answered(client, "/v1/stock/receipts", key, self.strays, self.lock, json=body, headers=headers)
        if r is None:
            return None
        if replayed is not None:
            assert (r.headers.get("idempotent-replayed") == "true") is replayed, (key, r.status_code, r.headers)
        return r.status_code

    def _writer(self, n: int) -> None:
        with httpx.Client(base_url=self.service.base) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                key = f"fo-{n}-{i}-{uuid.uuid4().hex[:6]}"
                place = PLACES[(n * 5 + i) % len(PLACES)]
                body = {"sku": place[0], "location": place[1], "quantity": 1 + (n + i) % 4, "reference": key}
                at = self.phase
                status = self.post(client, key, body)
                if status is None:
                    continue
                with self.lock:
                    self.sent[key] = (body, [(at, status)])
                    if at == "after" and 200 <= status < 300 and self.resumed_at is None:
                        self.resumed_at = time.monotonic()
                if status == 503:
                    self._stop.wait(0.05)  # a client backing off (Retry-After), not spinning

    def wait(self, cond: Any, timeout: float, what: str) -> None:
        """`wait_for`, failing with the answers seen so far and the service's log."""
        try:
            wait_for(cond, timeout, what)
        except AssertionError as e:
            with self.lock:
                seen = Counter((p, s) for _, answers in self.sent.values() for p, s in answers)
            raise AssertionError(
                f"{e}; answers by phase: {dict(seen)}; strays: {self.strays[:3]}\n{self.service.log_tail()}"
            ) from None

    def count(self, phase: str, ok: bool = True) -> int:
        with self.lock:
            return sum(
                1
                for _, answers in self.sent.values()
                for p, s in answers
                if p == phase and ((200 <= s < 300) if ok else s == 503)
            )

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(90)
        assert not any(t.is_alive() for t in self._threads), "a writer hangs"

    def check(self, stored_on: str) -> dict[str, int]:
        """The promise of an outage, checked against the database at URL `stored_on`."""
        assert not self.strays, self.strays[:5]
        statuses = {s for _, answers in self.sent.values() for _, s in answers}
        assert statuses <= {201, 503}, f"answers other than 2xx or 503: {statuses}"
        acknowledged = {k for k, (_, a) in self.sent.items() if any(200 <= s < 300 for _, s in a)}
        keys = {k: c.ReceiveStock(**b).key for k, (b, _) in self.sent.items()}
        with Ledger(ledger_env(stored_on)) as fresh:
            stored = set(fresh.app.recorder.select_commands(list(keys.values())))
        lost = [k for k in acknowledged if keys[k] not in stored]
        assert not lost, f"acknowledged but not stored: {lost[:10]}"

        # No key is blocked: each key again, with its body, answers 2xx (its first answer, or the
        # receipt done now for one that was refused), never 409 "in progress".
        with httpx.Client(base_url=self.service.base) as client:
            for key, (body, answers) in self.sent.items():
                # An acknowledged key replays its first answer. A refused one runs now, or replays the
                # answer of a write that was done though its answer could not be stored then.
                status = self.post(client, key, body, replayed=True if key in acknowledged else None)
                assert status is not None and 200 <= status < 300, (key, status, answers)
            expected = dict.fromkeys(PLACES, 0)
            for body, _ in self.sent.values():
                expected[(body["sku"], body["location"])] += body["quantity"]
            for sku, loc in PLACES:
                r = client.get(f"/v1/stock/{sku}/{loc}", headers=self.headers)
                assert r.status_code == 200, r.text
                assert r.json()["on_hand"] == expected[(sku, loc)], (sku, loc)
        assert not self.strays, self.strays[:5]
        return {
            "sent": len(self.sent),
            "acknowledged": len(acknowledged),
            "refused": sum(1 for _, a in self.sent.values() for _, s in a if s == 503),
        }
