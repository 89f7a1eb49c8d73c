"""The console's answers over HTTP (TestClient): events in plain words with linked causes, the
order list, stuck orders with their reasons, reconciliation runs, prefix search, the as-of
picker, scope-aware buttons and hostile ids kept as text."""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime
from urllib.parse import quote

import shopify_payloads as sp
from e2e_api import Api, uid
from test_console import HTML, parked_pos_batch, seed, sign_in
from test_webhooks_shopify import Shop, shop  # noqa: F401 - the fixture of a shop's webhooks

from projections.sweeper import Sweeper


def text_of(page: str, element_id: str) -> str:
    """The visible text of the element with this id (tags dropped, entities decoded, spaces folded)."""
    m = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert m, f"no #{element_id}"
    inline = re.sub(r"</?a\b[^>]*>", "", m.group(2))  # links are inline: no space around them
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def sweep_an_hour_later(api: Api) -> None:
    """The sweeper as it would run an hour from now: orders not posted to the ERP are stuck."""
    api.container.projector.catch_up()
    Sweeper(api.container.db, api.container.ledger.submit, 900, clock=lambda: time.time() + 3600).sweep()


def test_events_read_in_plain_words_with_their_causes_linked(api: Api):
    sku, w, oid = seed(api)
    sign_in(api, "audit:read")
    page = api.client.get(f"/console/skus/{sku}", headers=HTML).text
    timeline = text_of(page, "timeline")
    assert f"Reserved 3 for order {oid} line 1 at {w}" in timeline
    assert f"Received 8 at {w}" in timeline
    assert "API request by test-ingest:write" in timeline  # the key's name, not its id
    assert f'<a href="/console/orders/{oid}">{oid}</a>' in page
    assert "{'" not in page and "expires_at=None" not in page  # no Python reprs
    assert timeline.index("Reserved 3") < timeline.index("Received 8")  # newest first
    order = api.client.get(f"/console/orders/{oid}", headers=HTML).text
    events = text_of(order, "order-events")
    assert f"Captured order {oid} on channel web, 1 line(s): line 1: 3 × {sku}" in events
    assert f"Reserved 3 of line 1 at {w}" in events


def test_inbound_causes_link_to_their_message(api: Api):
    sku, w, _ = seed(api)
    store = uid("S")
    inbox_id = parked_pos_batch(api, sku, store)
    api.client.put(f"/v1/mappings/pos/location/{store}", json={"canonical": w}, headers=api.auth("admin"))
    api.container.intake.step()
    assert api.container.inbox.get(inbox_id)["status"] == "applied"
    sign_in(api, "audit:read")
    page = api.client.get(f"/console/skus/{sku}", headers=HTML).text
    assert f'<a href="/console/messages/{inbox_id}">pos message {inbox_id}</a>' in page
    assert f"Sold 2 at {w}" in text_of(page, "timeline")
    assert '<a href="/console/mappings">mappings as of version' in page


def test_the_order_list_is_newest_first_and_filters_by_stage_channel_and_open_work(any_api: Api):
    api = any_api
    sku, w, first = seed(api)
    api.client.put("/v1/channels/shop", json={"locations": [w], "safety_stock": 0}, headers=api.auth("admin"))
    second = uid("o")
    r = api.post(
        "/v1/orders",
        {"order_id": second, "channel": "shop", "lines": [{"line_id": "1", "sku": sku, "quantity": 1}]},
    )
    assert r.status_code == 201, r.text
    shipped = api.post(
        f"/v1/orders/{second}/shipments",
        {"shipment_id": uid("s"), "lines": [{"line_id": "1", "quantity": 1}]},
    )
    assert shipped.status_code in (200, 201), shipped.text
    api.container.projector.catch_up()
    sign_in(api, "audit:read")
    page = api.client.get("/console/orders", headers=HTML)
    assert page.status_code == 200
    listed = re.findall(r'<tr class="order" data-order="([^"]+)"', page.text)
    assert listed.index(second) < listed.index(first)  # newest captured first
    web = re.findall(
        r'data-order="([^"]+)"', api.client.get("/console/orders?channel=web", headers=HTML).text
    )
    assert first in web and second not in web
    reserved = api.client.get("/console/orders?stage=reserved", headers=HTML).text
    assert f'data-order="{first}"' in reserved and f'data-order="{second}"' not in reserved
    to_ship = api.client.get("/console/orders?open=ship", headers=HTML).text
    assert f'data-order="{first}"' in to_ship and f'data-order="{second}"' not in to_ship
    assert api.client.get("/console/orders?stage=planet", headers=HTML).status_code == 422
    assert api.client.get("/console/orders?open=nap", headers=HTML).status_code == 422
    assert api.client.get("/console/orders?before=nonsense", headers=HTML).status_code == 422


def test_the_order_list_pages_with_a_cursor_that_loses_nothing(api: Api):
    sku, w, _ = seed(api)
    api.post("/v1/stock/receipts", {"sku": sku, "location": w, "quantity": 100, "reference": uid()})
    made = set()
    for _ in range(55):
        oid = uid("p")
        r = api.post(
            "/v1/orders",
            {"order_id": oid, "channel": "web", "lines": [{"line_id": "1", "sku": sku, "quantity": 1}]},
        )
        assert r.status_code == 201, r.text
        made.add(oid)
    api.container.projector.catch_up()
    sign_in(api, "audit:read")
    seen: list[str] = []
    url = "/console/orders?channel=web"
    while url:
        page = api.client.get(html.unescape(url), headers=HTML).text
        seen += re.findall(r'<tr class="order" data-order="([^"]+)"', page)
        m = re.search(r'id="older" href="([^"]+)"', page)
        url = m.group(1) if m else ""
    assert made <= set(seen) and len(seen) == len(set(seen))


def test_stuck_orders_say_why_on_the_order_the_list_and_operations(any_api: Api):
    api = any_api
    _, _, oid = seed(api)
    sweep_an_hour_later(api)
    sign_in(api, "audit:read")
    order = api.client.get(f"/console/orders/{oid}", headers=HTML).text
    assert 'id="stuck-badge"' in order
    reason = text_of(order, "stuck-reason")
    assert "not posted to the ERP within 900 s" in reason and "LEDGER_ERP_URL is unset" in reason
    captured = re.search(r"captured (\S+),", reason)
    assert captured and datetime.fromisoformat(captured.group(1)).tzinfo is not None  # RFC 3339, not epoch
    ops = api.client.get("/console/operations", headers=HTML).text
    assert oid in text_of(ops, "stuck") and "LEDGER_ERP_URL is unset" in text_of(ops, "stuck")
    listed = api.client.get("/console/orders?open=post", headers=HTML).text
    assert re.search(rf'data-order="{oid}".*?class="tag bad stuck"', listed, re.S)


def test_a_reconciliation_run_page_explains_each_mismatch_and_drift_links_to_it(any_api: Api):
    api = any_api
    sku, w, _ = seed(api)
    now = datetime.now(UTC).isoformat()
    r = api.post(
        "/v1/reconciliations",
        {"source": "erp", "observed_at": now, "levels": [{"sku": sku, "location": w, "quantity": 5}]},
        scope="audit:read",
    )
    assert r.status_code == 200, r.text
    run_id = r.json()["id"]
    sign_in(api, "audit:read")
    ops = api.client.get("/console/operations", headers=HTML).text
    drift = text_of(ops, "drift")
    assert f"erp counts 5 on_hand of {sku} at {w}; the ledger had 8 (-3)" in drift
    assert f'href="/console/reconciliations/{run_id}"' in ops
    runs = api.client.get("/console/reconciliations", headers=HTML).text
    assert f'data-id="{run_id}"' in runs
    run = api.client.get(f"/console/reconciliations/{run_id}", headers=HTML)
    assert run.status_code == 200
    mismatches = text_of(run.text, "mismatches")
    assert sku in mismatches and "-3" in mismatches and r.json()["mismatches"][0]["explanation"] in mismatches
    assert f'<a href="/console/skus/{sku}">' in run.text
    sku_page = api.client.get(f"/console/skus/{sku}", headers=HTML).text
    assert "erp counts 5" in text_of(sku_page, "sku-exception-list")
    assert api.client.get("/console/reconciliations/nope", headers=HTML).status_code == 404


def test_search_matches_by_prefix_ignoring_case(any_api: Api):
    api = any_api
    sku, w, oid = seed(api)
    sign_in(api, "audit:read")
    prefix = sku[: len(sku) - 3].upper()
    hits = api.client.get("/console/search", params={"q": prefix}, headers=HTML, follow_redirects=False)
    if hits.status_code == 303:  # the only match: straight to it
        assert hits.headers["location"] == f"/console/skus/{sku}"
    else:
        assert f'href="/console/skus/{sku}"' in hits.text
    one = api.client.get("/console/search", params={"q": oid.upper()}, headers=HTML, follow_redirects=False)
    assert one.status_code == 303 and one.headers["location"] == f"/console/orders/{oid}"
    loc = api.client.get("/console/search", params={"q": w[:-2]}, headers=HTML, follow_redirects=False)
    assert loc.status_code == 303 and loc.headers["location"] == f"/console/locations/{w}"
    literal = api.client.get("/console/search", params={"q": "%_"}, headers=HTML)
    assert literal.status_code == 200 and 'id="no-hits"' in literal.text  # LIKE wildcards are text


def test_the_as_of_picker_shows_the_sku_and_the_order_as_they_stood(api: Api):
    sku, w, oid = seed(api)
    before_order = datetime.now(UTC)
    api.post("/v1/stock/receipts", {"sku": sku, "location": w, "quantity": 4, "reference": uid()})
    api.container.projector.catch_up()
    sign_in(api, "audit:read")
    now = api.client.get(f"/console/skus/{sku}", headers=HTML).text
    assert re.search(rf'data-location="{w}"><td><a[^>]*>{w}</a></td><td class="num">12<', now)
    then = api.client.get(f"/console/skus/{sku}", params={"as_of": before_order.isoformat()}, headers=HTML)
    assert then.status_code == 200 and 'id="as-of-note"' in then.text
    assert re.search(rf'data-location="{w}"><td><a[^>]*>{w}</a></td><td class="num">8<', then.text)
    assert "Received 4" not in text_of(then.text, "timeline")
    local = api.client.get(
        f"/console/skus/{sku}", params={"as_of": before_order.strftime("%Y-%m-%dT%H:%M:%S")}, headers=HTML
    )
    assert local.status_code == 200  # the browser's datetime-local value, read as UTC
    order = api.client.get(f"/console/orders/{oid}", params={"as_of": "2001-01-01T00:00:00Z"}, headers=HTML)
    assert order.status_code == 404 and "not captured yet" in order.text
    assert (
        api.client.get(f"/console/skus/{sku}", params={"as_of": "yesterday"}, headers=HTML).status_code == 422
    )


def test_a_viewer_without_admin_sees_admin_actions_disabled_with_the_reason(api: Api):
    sku, w, _ = seed(api)
    parked_pos_batch(api, sku, uid("S"))
    sign_in(api, "audit:read")
    for path in ("/console/operations", "/console/mappings"):
        page = api.client.get(path, headers=HTML).text
        assert (
            page.count('<fieldset class="act"')
            == page.count('<fieldset class="act" disabled title="needs a key with the admin scope">')
            > 0
        )
        assert "needs the admin scope: your key has audit:read" in page
    sign_in(api, "admin")
    page = api.client.get("/console/operations", headers=HTML).text
    assert '<fieldset class="act">' in page and "disabled" not in page and "needs the admin scope" not in page


def test_hostile_ids_render_as_text_everywhere(api: Api):
    sku, w, _ = seed(api)
    evil = "<script>alert(1)</script>\"'&"
    oid = "o-" + uid() + evil
    r = api.post(
        "/v1/orders",
        {"order_id": oid, "channel": "web", "lines": [{"line_id": evil, "sku": sku, "quantity": 1}]},
    )
    assert r.status_code == 201, r.text
    api.container.projector.catch_up()
    sign_in(api, "audit:read")
    for path in (f"/console/skus/{sku}", "/console/orders", "/console/operations"):
        page = api.client.get(path, headers=HTML)
        assert page.status_code == 200 and "<script>alert" not in page.text, path
    order = api.client.get("/console/orders/" + quote(oid, safe=""), headers=HTML)
    assert order.status_code == 200 and "<script>alert" not in order.text and "&lt;script&gt;" in order.text


def test_a_parked_shopify_order_asks_for_the_sku_and_calls_the_channel_mapping_optional(shop: Shop):  # noqa: F811
    shop.send("orders/create", sp.order(8101, [(1, 5566778899, None, 2)]))
    shop.drain()
    (parked,) = shop.inbox(status="parked")
    r = shop.client.post("/console/login", data={"token": shop.admin}, headers=HTML, follow_redirects=False)
    assert r.status_code == 303
    for path in ("/console/operations", f"/console/messages/{parked['id']}"):
        page = shop.client.get(path, headers=HTML).text
        forms = re.findall(
            r'<form action="/console/actions/map" method="post" class="map( optional)?" data-key="([^"]+)"',
            page,
        )
        assert forms[0] == ("", "shopify/sku/5566778899"), forms  # what it needs, first
        assert (" optional", f"shopify/channel/{sp.SHOP}") in forms
        assert "optional: an unmapped shop sells on channel online" in page


def test_the_sku_browse_lists_skus_by_prefix_ignoring_case(any_api: Api):
    api = any_api
    sku, w, _ = seed(api)
    family = uid("Fam-")
    for size in ("S", "M", "L"):
        api.post(
            "/v1/stock/receipts",
            {"sku": f"{family}-{size}", "location": w, "quantity": 2, "reference": uid()},
        )
    api.container.projector.catch_up()
    sign_in(api, "audit:read")
    page = api.client.get("/console/skus", params={"prefix": family.lower()}, headers=HTML)
    assert page.status_code == 200
    assert re.findall(r'<tr class="sku" data-sku="([^"]+)"', page.text) == [f"{family}-{x}" for x in "LMS"]
    assert f'href="/console/skus/{sku}"' in api.client.get("/console/skus", headers=HTML).text
    assert api.client.get("/console/skus", params={"prefix": "a\x01"}, headers=HTML).status_code == 422


def test_malformed_filters_and_cursors_are_refused_not_failed(api: Api):
    sign_in(api, "audit:read")
    for params in ({"before": "nan~x"}, {"before": "inf~x"}, {"before": "1.5~"}, {"channel": "a\x00"}):
        r = api.client.get("/console/orders", params=params, headers=HTML)
        assert r.status_code == 422, params
    evil = "<img src=x onerror=alert(1)>"
    r = api.client.get("/console/search", params={"q": evil}, headers=HTML)
    assert r.status_code == 200 and "<img src=x" not in r.text and "&lt;img src=x" in r.text
    r = api.client.get("/console/skus/x", params={"as_of": "2024-13-45T99:00:00Z"}, headers=HTML)
    assert r.status_code == 422
