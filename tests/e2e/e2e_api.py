"""Helpers of the HTTP tests: an app over a real database, a TestClient, one key per scope."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

with warnings.catch_warnings():  # starlette 1.x prefers httpx2; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from adapters.config import Settings
from adapters.persistence.urls import ensure_pg_schema, is_postgres
from api.app import create_app
from bootstrap import Container, bootstrap


@dataclass
class Api:
    client: TestClient
    container: Container
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, scope: str = "admin", **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}", **headers}

    def post(self, path: str, body: Any, scope: str = "ingest:write", **headers: str) -> Any:
        return self.client.post(path, json=body, headers=self.auth(scope, **headers))

    def get(self, path: str, scope: str = "audit:read", **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.auth(scope))

    def event_count(self) -> int:
        return self.container.ledger.app.recorder.max_position()  # type: ignore[attr-defined, no-any-return]  # the ledger's recorders add it


def make_api(url: str, **settings: Any) -> Iterator[Api]:
    if is_postgres(url):
        ensure_pg_schema(url)  # bootstrap makes the key tables before the ledger makes the schema
    container = bootstrap(Settings(database_url=url, **settings))
    app = create_app(container=container, run_workers=False)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            api = Api(client, container)
            for scope in ("ats:read", "audit:read", "ingest:write", "admin"):
                api.tokens[scope] = container.keys.create(f"test-{scope}", [scope])[1]
            yield api
    finally:
        container.close()


def project(api: Api) -> None:
    api.container.projector.catch_up()


def put_channel(client: TestClient, admin: dict[str, str], channel: str, *locations: str) -> None:
    """A channel policy over these locations, no safety stock: ATS is their summed available."""
    r = client.put(
        f"/v1/channels/{channel}", json={"locations": list(locations), "safety_stock": 0}, headers=admin
    )
    assert r.status_code == 200, r.text


def read_ats(client: TestClient, container: Container, reader: dict[str, str], channel: str, sku: str) -> int:
    """The ATS read model over HTTP, once the projection has caught up with the ledger."""
    projector = container.projector
    projector.catch_up()
    r = client.get(f"/v1/ats/{channel}/{sku}", headers=reader)
    assert r.status_code == 200, r.text
    assert r.json()["position"] == projector.head()
    return int(r.json()["available"])


def uid(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:10]
