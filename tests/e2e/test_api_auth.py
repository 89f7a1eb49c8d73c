"""Keys over HTTP and the CLI: tokens, scopes, expiry, revocation, rotation, audit, the first-start key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from e2e_api import Api, uid
from typer.testing import CliRunner

from adapters.keys import ApiKeys
from adapters.persistence.db import Database
from adapters.persistence.migrate import migrate
from cli.keys import first_start_key
from cli.main import app as cli

RECEIPT = {"sku": "S1", "location": "W1", "quantity": 1, "reference": "r1"}

# (method, path, body, scopes that may call it)
ROUTES = [
    ("POST", "/v1/stock/receipts", RECEIPT, {"ingest:write"}),
    (
        "POST",
        "/v1/stock/adjustments",
        {**RECEIPT, "delta": 1, "reason": "count", "quantity": None},
        {"ingest:write"},
    ),
    (
        "POST",
        "/v1/orders",
        {
            "order_id": "o1",
            "channel": "web",
            "lines": [{"line_id": "1", "sku": "S1", "quantity": 1, "location": "W1"}],
        },
        {"ingest:write"},
    ),
    ("POST", "/v1/orders/o1/cancellation", {"reason": "x"}, {"ingest:write"}),
    ("GET", "/v1/stock/S1/W1", None, {"audit:read"}),
    ("GET", "/v1/stock/S1/W1/events", None, {"audit:read"}),
    ("GET", "/v1/orders/o1", None, {"audit:read", "ats:read"}),
]


def call(api: Api, method: str, path: str, body: dict | None, headers: dict[str, str]):
    if body is not None:
        body = {k: v for k, v in body.items() if v is not None}
    return api.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method,path,body,allowed", ROUTES, ids=[r[1] + " " + r[0] for r in ROUTES])
def test_every_route_needs_a_token_with_its_scope(
    api: Api, method: str, path: str, body: dict | None, allowed: set[str]
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer lk_000000000000_unknown"},
        {"Authorization": "bearer  "},
    ):
        r = call(api, method, path, body, headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    for scope in ("ats:read", "audit:read", "ingest:write", "admin"):
        r = call(api, method, path, body, api.auth(scope))
        if scope in allowed or scope == "admin":
            assert r.status_code not in (401, 403), (scope, r.text)
        else:
            assert r.status_code == 403, (scope, r.text)
            assert r.json()["type"].endswith("/forbidden")


def test_a_revoked_key_is_refused_at_once_and_audited(api: Api) -> None:
    key_id, token = api.container.keys.create("pos-store-7", ["ingest:write"])
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.post("/v1/stock/receipts", json=RECEIPT, headers=headers).status_code == 201
    assert api.container.keys.revoke(key_id, actor="ops@example") is True
    assert api.client.post("/v1/stock/receipts", json=RECEIPT, headers=headers).status_code == 401
    assert api.container.keys.revoke(key_id) is False
    trail = api.container.keys.audit_trail()
    actions = [(t["action"], t["target"], t["actor"]) for t in trail]
    assert ("key.revoke", key_id, "ops@example") in actions
    assert ("key.create", key_id, "cli") in actions
    assert all(t["at"] for t in trail)


def test_an_expired_key_is_refused(api: Api) -> None:
    _, past = api.container.keys.create(
        "old", ["audit:read"], expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    _, future = api.container.keys.create(
        "new", ["audit:read"], expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    _, naive = api.container.keys.create("naive", ["audit:read"], expires_at=datetime(2000, 1, 1))
    assert api.client.get("/v1/stock/S/W", headers={"Authorization": f"Bearer {past}"}).status_code == 401
    assert api.client.get("/v1/stock/S/W", headers={"Authorization": f"Bearer {naive}"}).status_code == 401
    assert api.client.get("/v1/stock/S/W", headers={"Authorization": f"Bearer {future}"}).status_code == 404


def test_two_keys_are_active_at_once_during_a_rotation(api: Api) -> None:
    old_id, old = api.container.keys.create("erp-2024", ["ingest:write"])
    _, new = api.container.keys.create("erp-2025", ["ingest:write"])
    for token in (old, new):
        r = api.client.post(
            "/v1/stock/receipts",
            json={**RECEIPT, "reference": uid()},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201
    api.container.keys.revoke(old_id)
    assert (
        api.client.post(
            "/v1/stock/receipts", json=RECEIPT, headers={"Authorization": f"Bearer {old}"}
        ).status_code
        == 401
    )
    assert (
        api.client.post(
            "/v1/stock/receipts", json=RECEIPT, headers={"Authorization": f"Bearer {new}"}
        ).status_code
        == 201
    )


def test_unknown_scopes_are_refused_when_a_key_is_made(api: Api) -> None:
    with pytest.raises(ValueError):
        api.container.keys.create("x", ["root"])
    with pytest.raises(ValueError):
        api.container.keys.create("x", [])


def test_keys_create_prints_the_token_last_on_a_fresh_database(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no stray .env
    result = CliRunner().invoke(
        cli, ["keys", "create", "--name", "shop", "--scope", "ats:read", "--scope", "audit:read"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    db = Database(url)
    try:
        principal = ApiKeys(db).verify(token)
        assert principal is not None and principal.scopes == {"ats:read", "audit:read"}
        assert principal.name == "shop"
    finally:
        db.close()
    bad = CliRunner().invoke(cli, ["keys", "create", "--name", "x", "--scope", "root"])
    assert bad.exit_code == 2
    bad_expiry = CliRunner().invoke(
        cli, ["keys", "create", "--name", "x", "--scope", "admin", "--expires", "soon"]
    )
    assert bad_expiry.exit_code == 2


def test_the_first_start_makes_one_admin_key_and_only_once(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        migrate(db)
        keys = ApiKeys(db)
        token = first_start_key(keys)
        assert token is not None
        principal = keys.verify(token)
        assert principal is not None and principal.scopes == {"admin"}
        assert first_start_key(keys) is None
        assert [t["actor"] for t in keys.audit_trail() if t["action"] == "key.create"] == ["first-start"]
    finally:
        db.close()
