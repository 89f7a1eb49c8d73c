"""Query strings are input too: an unknown or repeated single-valued parameter is a 422, never a guess."""

from __future__ import annotations

from e2e_api import Api


def test_an_unknown_query_parameter_is_refused_rather_than_ignored(api: Api):
    r = api.get("/v1/exceptions", kinds="drift")  # a typo of `kind` would otherwise list everything
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["query", "kinds"]
    assert api.get("/v1/exceptions", kind="drift").status_code == 200


def test_an_unknown_exception_kind_is_refused_with_the_kinds_named(api: Api):
    r = api.get("/v1/exceptions", kind="shortfal")  # a typo would otherwise list nothing, silently
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "shortfall" in r.json()["detail"] and "late-order" in r.json()["detail"]
    for kind in ("shortfall", "late-order", "shopify-write", "held-order"):
        assert api.get("/v1/exceptions", kind=kind).status_code == 200


def test_a_single_valued_parameter_given_twice_is_refused(api: Api):
    assert (
        api.post(
            "/v1/stock/receipts", {"sku": "S", "location": "L", "quantity": 1, "reference": "r"}
        ).status_code
        == 201
    )
    r = api.client.get("/v1/stock/S/L/events?limit=1&limit=500", headers=api.auth("audit:read"))
    assert r.status_code == 422 and "takes one value" in r.json()["detail"]
    assert api.client.get("/v1/stock/S/L/events?limit=1", headers=api.auth("audit:read")).status_code == 200


def test_a_list_parameter_may_repeat(api: Api):
    put = api.client.put("/v1/channels/online", json={"locations": ["L"], "safety_stock": 0}, headers=api.auth("admin"))
    assert put.status_code in (200, 201), put.text
    r = api.client.get("/v1/ats/online?sku=A&sku=B", headers=api.auth("ats:read"))
    assert r.status_code == 200, r.text
    assert [item["sku"] for item in r.json()["items"]] == ["A", "B"]
