"""GET /v1/ats/{channel}/{sku}/explain over HTTP: terms that add up to the served ATS, now and as of."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from e2e_api import Api, project, uid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.bounds import stock_id


def channel(api: Api, name: str, body: dict) -> None:
    r = api.client.put(f"/v1/channels/{name}", json=body, headers=api.auth("admin"))
    assert r.status_code == 200, r.text


moves = st.lists(
    st.tuples(
        st.sampled_from(["receive", "order", "adjust", "cancel"]), st.integers(0, 2), st.integers(1, 9)
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=moves, safety=st.integers(0, 5), percent=st.integers(0, 50))
def test_explained_terms_add_up_to_the_served_ats_for_random_histories(api: Api, moves, safety, percent):
    sku, ch = uid("sku."), uid("ch")
    locs = [uid("w"), uid("w"), uid("w")]
    channel(api, ch, {"locations": locs[:2], "safety_stock": safety, "buffer": {"percent": percent}})
    orders: list[str] = []
    for verb, i, q in moves:
        if verb == "receive":
            api.post(
                "/v1/stock/receipts", {"sku": sku, "location": locs[i], "quantity": q, "reference": uid()}
            )
        elif verb == "adjust":
            api.post(
                "/v1/stock/adjustments",
                {"sku": sku, "location": locs[i], "delta": -q, "reason": "count", "reference": uid()},
            )
        elif verb == "order":
            oid = uid("o")
            r = api.post(
                "/v1/orders",
                {"order_id": oid, "channel": ch, "lines": [{"line_id": "1", "sku": sku, "quantity": q}]},
            )
            if r.status_code == 201:
                orders.append(oid)
        elif orders:
            api.post(f"/v1/orders/{orders.pop()}/cancellation", {"reason": "customer"})
    project(api)
    served = api.get(f"/v1/ats/{ch}/{sku}", scope="ats:read").json()
    e = api.get(f"/v1/ats/{ch}/{sku}/explain", scope="ats:read").json()
    assert e["available"] == served["available"] == e["read_model"]["available"]
    assert e["position"] == served["position"]
    assert [x["location"] for x in e["locations"]] == locs[:2]
    total = sum(x["on_hand"] - x["reserved"] - x["unavailable"] for x in e["locations"])
    assert total == e["total_available"]
    assert e["available"] == max(0, total - e["safety_stock"]["value"] - e["buffer"]["value"]) or not any(
        x["known"] for x in e["locations"]
    )
    for x in e["locations"]:
        s = api.container.ledger.history.stock(sku, x["location"])
        assert (x["on_hand"], x["reserved"]) == ((s.on_hand, s.reserved) if s else (0, 0))
        assert all(link["position"] <= e["position"] for link in x["events"]["items"])


def test_as_of_explains_a_past_value_under_the_policy_then_in_force(any_api: Api):
    api, sku, ch, w = any_api, uid("sku."), uid("ch"), uid("w")
    channel(api, ch, {"locations": [w], "safety_stock": 1})
    api.post("/v1/stock/receipts", {"sku": sku, "location": w, "quantity": 10, "reference": uid()})
    time.sleep(0.01)
    then = datetime.now(UTC)
    time.sleep(0.01)
    api.post("/v1/stock/receipts", {"sku": sku, "location": w, "quantity": 5, "reference": uid()})
    channel(api, ch, {"locations": [w], "safety_stock": 4})
    project(api)
    now = api.get(f"/v1/ats/{ch}/{sku}/explain").json()
    assert now["available"] == 15 - 4 == now["read_model"]["available"]
    past = api.client.get(
        f"/v1/ats/{ch}/{sku}/explain", params={"as_of": then.isoformat()}, headers=api.auth("audit:read")
    ).json()
    assert past["available"] == 10 - 1 and past["as_of"] == then.isoformat()
    assert past["policy"]["version"] < now["policy"]["version"]
    agg = api.container.ledger.history.as_of_time(stock_id(sku, w), then)
    assert past["locations"][0]["on_hand"] == agg.on_hand
    linked = past["locations"][0]["events"]["items"]
    assert [x["type"] for x in linked] == ["Opened", "StockReceived"]
    assert linked[-1]["moved"] == {"on_hand": 10} and past["position"] == linked[-1]["position"]


def test_hostile_explain_requests_get_problems(api: Api):
    channel(api, "web", {"locations": ["w"], "safety_stock": 0})
    assert api.client.get("/v1/ats/web/x/explain").status_code == 401
    assert api.get("/v1/ats/web/x/explain", scope="ingest:write").status_code == 403
    r = api.get("/v1/ats/nowhere/x/explain")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert api.get("/v1/ats/web/x/explain", as_of="2024-01-01T00:00:00").status_code == 422
    assert api.get("/v1/ats/web/x/explain", as_of="yesterday").status_code == 422
    assert api.get("/v1/ats/web/x/explain", as_of="1999-01-01T00:00:00Z").status_code == 404
    assert api.get("/v1/ats/web/a%01b/explain").status_code == 422
    project(api)
    never = api.get("/v1/ats/web/never-seen/explain", scope="ats:read").json()
    assert never["available"] == 0 and not never["locations"][0]["known"]
