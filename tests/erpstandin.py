"""An ERP stand-in: a real HTTP server for the ERP's JSON API, shared by every test that needs one.

- `POST /sales-orders`, `/sales-orders/{order_id}/cancellations`, `/deliveries`, `/returns`,
  `/credit-memos`: a document is created once per `Idempotency-Key`, as a careful ERP does, and
  answered `201 {"reference": "ERP-n"}`. `documents` keeps them in the order they were accepted.
- `script` lists the answer mode of the first POSTs (`down`: 503, `slow`: answers after the
  client gave up); after the script every POST is accepted.
- `hold(order_id)` makes that order's POSTs wait until `release(order_id)`: a document stuck in
  flight, to show that it holds back nobody else.
- `GET /inventory` answers `inventory` (status, body), for reconciliation.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class ErpStandIn:
    def __init__(self, script: list[str] | None = None, slow_seconds: float = 0.3) -> None:
        self.script = list(script or [])
        self.slow_seconds = slow_seconds
        self.lock = threading.Condition()
        self.documents: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> {path, **body}
        self.requests: Counter[str] = Counter()  # answer mode -> count
        self.accepted: Counter[str] = Counter()  # Idempotency-Key -> 2xx answers given
        self.paths: Counter[str] = Counter()  # path -> documents created
        self.inventory: tuple[int, bytes] = (200, b'{"levels": []}')
        self._held: dict[str, threading.Event] = {}
        self.waiting: set[str] = set()  # held orders with a request in flight
        erp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                status, body = erp.inventory if self.path == "/inventory" else (404, b"{}")
                self._send(status, body)

            def do_POST(self) -> None:  # noqa: N802
                body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                order_id = str(body.get("order_id", "")) if isinstance(body, dict) else ""
                with erp.lock:
                    gate = erp._held.get(order_id)
                    if gate is not None:
                        erp.waiting.add(order_id)
                        erp.lock.notify_all()
                if gate is not None:
                    gate.wait(60)
                with erp.lock:
                    mode = erp.script.pop(0) if erp.script else "ok"
                    erp.requests[mode] += 1
                if mode == "down":
                    return self._answer(503, {"error": "maintenance"})
                if mode == "slow":
                    time.sleep(erp.slow_seconds)
                key = self.headers.get("Idempotency-Key", "")
                with erp.lock:
                    if key not in erp.documents:
                        erp.documents[key] = {"path": self.path, **body}
                        erp.paths[self.path] += 1
                    erp.accepted[key] += 1
                    reference = f"ERP-{list(erp.documents).index(key)}"
                    erp.lock.notify_all()
                self._answer(201, {"reference": reference})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, orjson.dumps(body))

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client timed out and left

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hold(self, order_id: str) -> None:
        with self.lock:
            self._held[order_id] = threading.Event()

    def release(self, order_id: str) -> None:
        with self.lock:
            gate = self._held.pop(order_id, None)
        if gate is not None:
            gate.set()

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        """Waits until `predicate(self)` holds (checked whenever the ERP answers)."""
        with self.lock:
            if not self.lock.wait_for(lambda: predicate(self), timeout):
                raise AssertionError("the ERP never reached the awaited state")

    def story(self, order_id: str) -> list[tuple[str, dict[str, Any]]]:
        """One order's documents, (path, body), in the order the ERP accepted them."""
        with self.lock:
            return [(d["path"], d) for d in self.documents.values() if d.get("order_id") == order_id]

    def close(self) -> None:
        for order_id in list(self._held):
            self.release(order_id)
        self.server.shutdown()
        self.server.server_close()
