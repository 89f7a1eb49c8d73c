"""The console over HTTP (TestClient): sign-in, pages, CSRF and scope refusals, map and retry, masking."""

from __future__ import annotations

import re

import orjson
from e2e_api import Api, uid

from ledger import commands as c

HTML = {"accept": "text/html"}


def sign_in(api: Api, scope: str) -> None:
    api.client.cookies.clear()
    r = api.client.post(
        "/console/login", data={"token": api.tokens[scope]}, headers=HTML, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert api.tokens[scope] not in cookie


def csrf(api: Api) -> str:
    page = api.client.get("/console/operations", headers=HTML)
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, page.text[:500]
    return m.group(1)


def seed(api: Api) -> tuple[str, str, str]:
    sku, w, oid = uid("sku."), uid("w"), uid("o")
    api.client.put("/v1/channels/web", json={"locations": [w], "safety_stock": 1}, headers=api.auth("admin"))
    api.post("/v1/stock/receipts", {"sku": sku, "location": w, "quantity": 8, "reference": uid()})
    r = api.post(
        "/v1/orders",
        {"order_id": oid, "channel": "web", "lines": [{"line_id": "1", "sku": sku, "quantity": 3}]},
    )
    assert r.status_code == 201, r.text
    api.container.projector.catch_up()
    return sku, w, oid


def parked_pos_batch(api: Api, sku: str, store: str) -> int:
    item = uid("item")
    api.client.put(f"/v1/mappings/pos/sku/{item}", json={"canonical": sku}, headers=api.auth("admin"))
    body = {
        "store": store,
        "batch_id": uid("b"),
        "sequence": 1,
        "transactions": [
            {
                "txn_id": uid("t"),
                "type": "sale",
                "occurred_at": "2024-05-01T10:00:00Z",
                "lines": [{"item": item, "quantity": 2}],
            }
        ],
    }
    r = api.post("/v1/pos/batches", body)
    assert r.status_code in (200, 201, 202), r.text
    api.container.intake.step()
    inbox_id = int(r.json()["inbox_id"])
    assert api.container.inbox.get(inbox_id)["status"] == "parked"
    return inbox_id


def test_unsigned_visitors_are_sent_to_sign_in_and_bad_keys_are_refused(api: Api):
    r = api.client.get("/console/operations", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert api.client.get("/console/login").status_code == 200
    bad = api.client.post("/console/login", data={"token": "lk_nope"}, headers=HTML)
    assert bad.status_code == 401 and "unknown" in bad.text and "set-cookie" not in bad.headers
    ats_only = api.client.post("/console/login", data={"token": api.tokens["ats:read"]})
    assert ats_only.status_code == 403
    assert ats_only.headers["content-type"].startswith("application/problem+json")
    assert (
        api.client.post(
            "/console/login", content=b'{"token": 1}', headers={"content-type": "application/json"}
        ).status_code
        == 415
    )
    assert (
        api.client.post(
            "/console/login",
            content=b"token=" + b"x" * 20_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        ).status_code
        == 413
    )
    assert api.client.get("/console/static/../app.py").status_code == 404


def test_an_auditor_sees_the_sku_order_and_operations_pages(api: Api):
    sku, w, oid = seed(api)
    sign_in(api, "audit:read")
    page = api.client.get(f"/console/search?q={sku}", headers=HTML)
    assert page.status_code == 200 and f'SKU <span id="sku">{sku}</span>' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'class="ats-line"' in page.text and re.search(r'd="M[\d.]+,[\d.]+ ', page.text)
    assert "max(0, 5 − 1 − 0) = 4" in page.text  # 8 on hand − 3 reserved, − safety stock 1
    assert f'href="/console/orders/{oid}"' in page.text
    order = api.client.get(f"/console/orders/{oid}", headers=HTML)
    assert order.status_code == 200 and '<span class="stage" id="stage">reserved</span>' in order.text
    ops = api.client.get("/console/operations", headers=HTML)
    assert ops.status_code == 200 and "Outbox depth" in ops.text and "needs the admin scope" in ops.text
    for path in ("/console", "/console/mappings", "/console/channels", f"/console/locations/{w}"):
        assert api.client.get(path, headers=HTML).status_code == 200, path
    assert api.client.get("/console/skus/nothing-here", headers=HTML).status_code == 404
    assert api.client.get("/console/orders/a%01b", headers=HTML).status_code == 422


def test_search_finds_orders_by_their_outside_ids(api: Api):
    sku, w, _ = seed(api)
    oid, name = uid("820"), "#" + uid()
    api.container.ledger.execute(
        c.CaptureOrder(
            order_id=oid,
            channel="web",
            lines=({"line_id": "1", "sku": sku, "quantity": 1},),
            external_refs={"name": name},
            cause={},
        )
    )
    erp_ref = uid("SO")
    api.container.ledger.execute(c.AddCorrelationIds(order_id=oid, ids={"erp": erp_ref}))
    api.container.projector.catch_up()  # the search reads the orders read model's `order_refs`
    sign_in(api, "audit:read")
    for ref in (name, erp_ref):
        r = api.client.get("/console/search", params={"q": ref}, headers=HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/console/orders/{oid}"
    nothing = api.client.get("/console/search", params={"q": uid("none")}, headers=HTML)
    assert nothing.status_code == 200 and 'id="no-hits"' in nothing.text


def test_actions_without_the_right_csrf_token_or_scope_are_refused_and_change_nothing(api: Api):
    sku, w, _ = seed(api)
    store = uid("S")
    inbox_id = parked_pos_batch(api, sku, store)
    form = {"source": "pos", "kind": "location", "external_id": store, "canonical": w}
    sign_in(api, "admin")
    token = csrf(api)
    assert api.client.post("/console/actions/map", data=form, headers=HTML).status_code == 403
    assert api.client.post("/console/actions/map", data={**form, "csrf": token + "x"}).status_code == 403
    sign_in(api, "audit:read")
    auditor_token = csrf(api)
    r = api.client.post("/console/actions/map", data={**form, "csrf": auditor_token}, headers=HTML)
    assert r.status_code == 403 and "admin scope" in r.text
    r = api.client.post("/console/actions/rebuild", data={"name": "ats", "csrf": auditor_token})
    assert r.status_code == 403 and r.json()["type"].endswith("forbidden")
    assert api.container.mappings.get("pos", "location", store) is None
    assert api.container.inbox.get(inbox_id)["status"] == "parked"
    api.client.cookies.clear()
    assert api.client.post("/console/actions/map", data={**form, "csrf": auditor_token}).status_code == 401


def test_map_and_retry_applies_the_parked_message(api: Api):
    sku, w, _ = seed(api)
    store = uid("S")
    inbox_id = parked_pos_batch(api, sku, store)
    sign_in(api, "admin")
    ops = api.client.get("/console/operations", headers=HTML).text
    assert f"pos/location/{store}" in ops
    bad = api.client.post(
        "/console/actions/map",
        data={"source": "pos", "kind": "planet", "external_id": store, "canonical": w, "csrf": csrf(api)},
    )
    assert bad.status_code == 422
    r = api.client.post(
        "/console/actions/map",
        data={"source": "pos", "kind": "location", "external_id": store, "canonical": w, "csrf": csrf(api)},
        headers=HTML,
    )
    assert r.status_code == 200 and "1 parked message(s) applied" in r.text
    assert api.container.inbox.get(inbox_id)["status"] == "applied"
    assert api.container.ledger.history.stock(sku, w).on_hand == 8 - 2
    history = api.container.mappings.history("pos", "location", store)
    assert history[-1]["actor"].startswith("test-admin") and history[-1]["actor"].endswith("via console")
    rebuild = api.client.post(
        "/console/actions/rebuild", data={"name": "stock", "csrf": csrf(api)}, headers=HTML
    )
    assert rebuild.status_code == 200 and "rebuild of stock started" in rebuild.text


def test_personal_data_is_masked_unless_the_key_is_admin(api: Api):
    payload = {
        "id": 1,
        "email": "jane.doe@example.com",
        "customer": {"first_name": "Jane", "phone": "+44 20 7946 0000"},
        "line_items": [],
    }
    stored = api.container.inbox.store(
        "shopify",
        uid("wh"),
        "orders/create",
        orjson.dumps(payload),
        {},
        "fp",
        status="rejected",
        reason="test",
    )
    inbox_id = stored.row["id"]
    sign_in(api, "audit:read")
    masked = api.client.get(f"/console/messages/{inbox_id}", headers=HTML).text
    assert "jane.doe@example.com" not in masked and "Jane" not in masked and "7946" not in masked
    assert "personal data masked" in masked
    sign_in(api, "admin")
    assert "jane.doe@example.com" in api.client.get(f"/console/messages/{inbox_id}", headers=HTML).text


def test_signing_out_ends_the_session_and_revoking_the_key_ends_it_too(api: Api):
    sign_in(api, "audit:read")
    token = csrf(api)
    assert api.client.post("/console/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert api.client.get("/console/operations", follow_redirects=False).status_code == 303
    key_id, secret = api.container.keys.create("temp", ["audit:read"])
    api.client.cookies.clear()
    api.client.post("/console/login", data={"token": secret}, follow_redirects=False)
    assert api.client.get("/console/operations", follow_redirects=False).status_code == 200
    api.container.keys.revoke(key_id)
    assert api.client.get("/console/operations", follow_redirects=False).status_code == 303
