"""The ATS point query answered from memory: same answers, never superseded, keys and logs intact."""

from __future__ import annotations

import io
import json
import time
import warnings

from e2e_api import Api, make_api, project, put_channel, uid

from adapters.config import Settings
from api.app import create_app
from api.fastpath import FastPath
from bootstrap import bootstrap
from projections.cache import FRESH_SECONDS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def fast_path(app: object) -> FastPath:
    layer = getattr(app, "middleware_stack", None)
    while layer is not None and not isinstance(layer, FastPath):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, FastPath), "the app has no ATS fast path"
    return layer


def ats_answers(fast: FastPath) -> int:
    return fast.answered.get("/v1/ats/{channel}/{sku}", 0)


def receive(api: Api, sku: str, location: str, quantity: int) -> None:
    body = {"sku": sku, "location": location, "quantity": quantity, "reference": uid("r")}
    assert api.post("/v1/stock/receipts", body).status_code == 201


def test_the_fast_path_answers_like_the_route_and_follows_each_commit(any_api: Api) -> None:
    api, sku, loc = any_api, uid("sku-"), uid("w")
    put_channel(api.client, api.auth(), "web", loc)
    receive(api, sku, loc, 7)
    project(api)
    fast = fast_path(api.client.app)
    first = api.get(f"/v1/ats/web/{sku}", scope="ats:read")  # the route: reads, fills the cache
    answered = ats_answers(fast)
    second = api.get(f"/v1/ats/web/{sku}", scope="ats:read")
    assert ats_answers(fast) == answered + 1
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    for name in ("content-type", "content-length"):
        assert first.headers[name] == second.headers[name]
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    head = api.container.projector.head()
    assert second.json() == {"channel": "web", "sku": sku, "available": 7, "position": head}

    receive(api, sku, loc, 5)
    project(api)  # committed: the next answer has the new value and position, from memory
    third = api.get(f"/v1/ats/web/{sku}", scope="ats:read")
    assert ats_answers(fast) == answered + 2
    assert third.json() == {"channel": "web", "sku": sku, "available": 12, "position": head + 1}
    many = api.client.get("/v1/ats/web", params=[("sku", sku)], headers=api.auth("ats:read")).json()
    assert many == {"items": [third.json()]}

    metrics = api.client.get("/metrics").text
    assert 'route="/v1/ats/{channel}/{sku}",status="200"' in metrics


def test_problems_still_come_from_the_route_once_the_cache_is_warm(api: Api) -> None:
    sku, loc = uid("sku-"), uid("w")
    put_channel(api.client, api.auth(), "web", loc)
    receive(api, sku, loc, 3)
    project(api)
    assert api.get(f"/v1/ats/web/{sku}", scope="ats:read").status_code == 200
    fast = fast_path(api.client.app)
    answered = ats_answers(fast)
    assert api.get(f"/v1/ats/web/{sku}", scope="ingest:write").status_code == 403
    assert api.get(f"/v1/ats/web/{sku}", scope="admin").status_code == 200  # admin holds every scope
    assert api.client.get(f"/v1/ats/web/{sku}").status_code == 401
    assert api.client.get(f"/v1/ats/web/{sku}", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/v1/ats/nowhere/x", scope="ats:read").status_code == 404
    assert api.get("/v1/ats/web/a%00b", scope="ats:read").status_code == 422
    assert api.get(f"/v1/ats/web/{'x' * 129}", scope="ats:read").status_code == 422
    assert ats_answers(fast) == answered + 1  # only the admin read


def test_a_revoked_key_stops_at_once_here_and_within_the_bound_elsewhere(pg_url: str) -> None:
    apis = make_api(pg_url)
    api = next(apis)
    other = bootstrap(Settings(database_url=pg_url))  # another process on the same database
    try:
        sku, loc = uid("sku-"), uid("w")
        put_channel(api.client, api.auth(), "web", loc)
        receive(api, sku, loc, 3)
        project(api)
        here_id, here = api.container.keys.create("here", ["ats:read"])
        there_id, there = api.container.keys.create("there", ["ats:read"])
        api.container.keys.cache_seconds = 0.3
        for token in (here, there):
            for _ in range(2):  # the second answer comes from the fast path
                r = api.client.get(f"/v1/ats/web/{sku}", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200
        api.container.keys.revoke(here_id, actor="test")
        assert (
            api.client.get(f"/v1/ats/web/{sku}", headers={"Authorization": f"Bearer {here}"}).status_code
            == 401
        )
        other.keys.revoke(there_id, actor="test")
        time.sleep(0.35)  # the documented bound: ApiKeys.cache_seconds
        assert (
            api.client.get(f"/v1/ats/web/{sku}", headers={"Authorization": f"Bearer {there}"}).status_code
            == 401
        )
    finally:
        other.close()
        apis.close()


def test_a_server_without_the_runner_reflects_the_database_within_the_bound(pg_url: str) -> None:
    apis = make_api(pg_url)
    writer = next(apis)  # runs the projector (here: by hand)
    reader = bootstrap(Settings(database_url=pg_url))  # `ledger serve --no-workers` beside it
    try:
        with TestClient(create_app(container=reader, run_workers=False)) as client:
            sku, loc = uid("sku-"), uid("w")
            put_channel(writer.client, writer.auth(), "web", loc)
            receive(writer, sku, loc, 4)
            project(writer)
            auth = writer.auth("ats:read")
            for _ in range(3):
                got = client.get(f"/v1/ats/web/{sku}", headers=auth).json()
            head = writer.container.projector.head()
            assert got == {"channel": "web", "sku": sku, "available": 4, "position": head}
            receive(writer, sku, loc, 6)
            project(writer)  # committed in the other process: this one hears nothing
            committed = time.monotonic()
            seen = []
            while time.monotonic() - committed < 3 * FRESH_SECONDS:
                body = client.get(f"/v1/ats/web/{sku}", headers=auth).json()
                seen.append((time.monotonic() - committed, body["available"], body["position"]))
            # Every answer is truthful (an old value only with its old position) ...
            assert all((a, p) in ((4, head), (10, head + 1)) for _, a, p in seen), seen
            # ... and none after the bound is the superseded one.
            assert all(a == 10 for t, a, _ in seen if t > FRESH_SECONDS), seen
            assert seen[-1][1:] == (10, head + 1)
    finally:
        reader.close()
        apis.close()


def test_successful_ats_reads_are_sampled_and_errors_always_logged(json_logs: io.StringIO, api: Api) -> None:
    sku, loc = uid("sku-"), uid("w")
    put_channel(api.client, api.auth(), "web", loc)
    receive(api, sku, loc, 3)
    project(api)
    for _ in range(150):
        assert api.get(f"/v1/ats/web/{sku}", scope="ats:read").status_code == 200
    for _ in range(3):
        assert api.client.get(f"/v1/ats/web/{sku}").status_code == 401
    lines = [json.loads(x) for x in json_logs.getvalue().splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("logger") == "ledger.access" and x["route"].startswith("/v1/ats/")]
    ok = [x for x in access if x["status"] == 200]
    assert 1 <= len(ok) <= 2 and all(x["sampled"] == 100 and x["request_id"] for x in ok)
    assert len([x for x in access if x["status"] == 401]) == 3
