"""ATS, channel policies, projections and exceptions over HTTP."""

from __future__ import annotations

import time

from e2e_api import Api, project, uid


def put_channel(api: Api, channel: str, body: dict) -> object:
    return api.client.put(f"/v1/channels/{channel}", json=body, headers=api.auth("admin"))


def test_ats_follows_receipts_and_the_channel_policy(any_api: Api):
    api, sku, w1, w2 = any_api, uid("sku."), uid("w"), uid("w")
    r = put_channel(api, "web", {"locations": [w1, w2], "safety_stock": 2, "buffer": {"percent": 10}})
    assert r.status_code == 200, r.text
    assert r.json()["version"] >= 1 and r.json()["changed_by"].startswith("test-admin")
    for loc, q in ((w1, 10), (w2, 5)):
        assert api.post(
            "/v1/stock/receipts", {"sku": sku, "location": loc, "quantity": q, "reference": uid("r")}
        ).status_code in (200, 201)
    project(api)
    got = api.get(f"/v1/ats/web/{sku}", scope="ats:read")
    assert got.status_code == 200
    body = got.json()
    assert body["available"] == 15 - 2 - 2 and body["channel"] == "web" and body["sku"] == sku
    assert body["position"] == api.container.projector.head()

    put_channel(api, "web", {"locations": [w1], "safety_stock": 0, "excluded_skus": []})
    project(api)
    many = api.client.get(
        "/v1/ats/web", params=[("sku", sku), ("sku", "never-seen")], headers=api.auth("ats:read")
    ).json()
    assert [(i["sku"], i["available"]) for i in many["items"]] == [(sku, 10), ("never-seen", 0)]
    history = api.get("/v1/channels/web", scope="audit:read").json()
    assert [v["version"] for v in history["versions"]] == sorted(
        (v["version"] for v in history["versions"]), reverse=True
    )
    assert len(history["versions"]) >= 2
    assert any(a["action"] == "channel.set" for a in api.container.keys.audit_trail())


def test_hostile_ats_and_policy_requests_get_problems_and_write_nothing(api: Api):
    assert api.get("/v1/ats/nowhere/x", scope="ats:read").status_code == 404
    assert api.client.get("/v1/ats/web/x").status_code == 401
    assert api.get("/v1/ats/web/x", scope="ingest:write").status_code == 403
    put_channel(api, "web", {"locations": ["w"], "safety_stock": 0})
    bad = [
        {"locations": [], "safety_stock": 1},
        {"locations": ["w"], "safety_stock": -1},
        {"locations": ["w", "w"], "safety_stock": 1},
        {"locations": ["w"], "safety_stock": 1, "buffer": {"units": 1, "percent": 5}},
        {"locations": ["w"], "safety_stock": 1, "buffer": {"percent": 101}},
        {"locations": ["w\x00"], "safety_stock": 1},
        {"locations": ["w"], "safety_stock": "many"},
        {"locations": ["w"], "safety_stock": 1, "surprise": True},
        {"locations": ["x" * 129], "safety_stock": 1},
    ]
    versions = len(api.get("/v1/channels/web").json()["versions"])
    for body in bad:
        r = put_channel(api, "web", body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert len(api.get("/v1/channels/web").json()["versions"]) == versions
    r = api.client.put(
        "/v1/channels/web", json={"locations": ["w"], "safety_stock": 1}, headers=api.auth("ats:read")
    )
    assert r.status_code == 403
    assert api.client.get("/v1/ats/web", headers=api.auth("ats:read")).status_code == 422
    too_many = [("sku", f"s{i}") for i in range(101)]
    assert api.client.get("/v1/ats/web", params=too_many, headers=api.auth("ats:read")).status_code == 422
    assert api.get("/v1/ats/web/a%00b", scope="ats:read").status_code == 422
    assert api.get("/v1/exceptions", status="bogus").status_code == 422


def test_projections_list_and_a_rebuild_job(api: Api):
    put_channel(api, "web", {"locations": ["w"], "safety_stock": 0})
    api.post("/v1/stock/receipts", {"sku": "a", "location": "w", "quantity": 3, "reference": "r1"})
    project(api)
    listed = api.get("/v1/projections", scope="admin").json()["items"]
    assert {p["name"] for p in listed} == {"ats", "stock", "orders"}
    assert all(p["lag_positions"] == 0 for p in listed)
    assert api.client.post("/v1/projections/nope/rebuild", headers=api.auth("admin")).status_code == 404
    assert api.client.post("/v1/projections/ats/rebuild", headers=api.auth("audit:read")).status_code == 403
    r = api.client.post("/v1/projections/ats/rebuild", headers=api.auth("admin"))
    assert r.status_code == 202
    job = r.json()["id"]
    deadline = time.monotonic() + 30
    while True:
        jobs = {j["id"]: j for j in api.get("/v1/projections", scope="admin").json()["jobs"]}
        if jobs[job]["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert jobs[job]["state"] == "done" and jobs[job]["result"]["published"] == 0
    assert api.get("/v1/ats/web/a", scope="ats:read").json()["available"] == 3


def test_exceptions_list_stuck_orders_past_the_deadline(api: Api):
    put_channel(api, "web", {"locations": ["w"], "safety_stock": 0})
    api.post("/v1/stock/receipts", {"sku": "a", "location": "w", "quantity": 3, "reference": "r1"})
    order = uid("o")
    r = api.post(
        "/v1/orders",
        {"order_id": order, "channel": "web", "lines": [{"line_id": "1", "sku": "a", "quantity": 1}]},
    )
    assert r.status_code == 201, r.text
    project(api)
    sweeper = api.container.sweeper
    sweeper.clock = lambda: time.time() + api.container.settings.erp_posting_deadline_seconds + 1
    assert sweeper.sweep()["opened"] >= 1
    items = api.get("/v1/exceptions", kind="stuck-order").json()["items"]
    assert [i["key"] for i in items] == [order]
    assert api.get("/v1/exceptions", kind="stuck-order", scope="ats:read").status_code == 403
