"""An app with the adapters over a real database, keys per scope, and a way to apply the inbox now."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from e2e_api import put_channel, read_ats

from adapters.config import Settings
from api.app import create_app
from bootstrap import Container, bootstrap
from ledger.ports import StaticLocations


class AdaptersApi:
    def __init__(self, client: TestClient, container: Container) -> None:
        self.client = client
        self.container = container
        self.tokens = {
            s: container.keys.create(f"test-{s}", [s])[1]
            for s in ("ats:read", "audit:read", "ingest:write", "admin")
        }

    def h(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def post(self, path: str, body: Any, scope: str = "ingest:write") -> Any:
        return self.client.post(path, json=body, headers=self.h(scope))

    def get(self, path: str, scope: str = "audit:read", **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.h(scope))

    def map(self, source: str, kind: str, external_id: str, canonical: str) -> dict[str, Any]:
        r = self.client.put(
            f"/v1/mappings/{source}/{kind}/{external_id}",
            json={"canonical": canonical},
            headers=self.h("admin"),
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]  # JSON

    def drain(self) -> None:
        """Applies everything the inbox holds (what the inbox worker does in the background)."""
        intake = self.container.intake
        for _ in range(50):
            if not intake.step():
                return

    def inbox(self, **params: Any) -> list[dict[str, Any]]:
        r = self.get("/v1/inbox", limit=1000, **params)
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]  # JSON

    def channel(self, channel: str, *locations: str) -> None:
        put_channel(self.client, self.h("admin"), channel, *locations)

    def ats(self, channel: str, sku: str) -> int:
        return read_ats(self.client, self.container, self.h("ats:read"), channel, sku)

    def on_hand(self, sku: str, location: str) -> int:
        s = self.container.ledger.history.stock(sku, location)
        return 0 if s is None else s.on_hand


def make(url: str, groups: dict[str, list[str]] | None = None, **settings: Any) -> Iterator[AdaptersApi]:
    container = bootstrap(Settings(database_url=url, **settings), locations=StaticLocations(groups or {}))
    app = create_app(container=container, run_workers=False)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield AdaptersApi(client, container)
    finally:
        container.close()
