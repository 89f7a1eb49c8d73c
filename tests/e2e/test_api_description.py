"""The API describes itself: offline /docs and /redoc, the bearer scheme, problem types, AsyncAPI."""

from __future__ import annotations

import re
from pathlib import Path

from e2e_api import Api

from api.problem_types import PROBLEM_TYPES
from api.problems import SLUG_BY_STATUS, TYPE_BASE

ROOT = Path(__file__).resolve().parents[2]


def test_docs_and_redoc_load_their_assets_from_the_service_itself(api: Api):
    for page in ("/docs", "/redoc"):
        r = api.client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        sources = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', r.text)
        assert sources, page
        for src in sources:
            assert not src.startswith(("http://", "https://", "//")), f"{page} loads {src} from outside"
            if src.startswith("/docs-assets/"):
                asset = api.client.get(src)
                assert asset.status_code == 200 and len(asset.content) > 1000, src
    assert "cdn" not in api.client.get("/docs").text.lower()


def test_the_openapi_document_declares_the_bearer_scheme_on_the_routes_that_need_a_key(api: Api):
    spec = api.client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert {"bearer": []} in spec["paths"]["/v1/orders"]["post"]["security"]
    assert {"bearer": []} in spec["paths"]["/v1/stock/receipts"]["post"]["security"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "security" not in spec["paths"]["/v1/webhooks/shopify"]["post"]  # signed by Shopify, no key


def test_every_problem_type_resolves_to_a_page_saying_what_it_means_and_what_to_do(api: Api):
    for name, entry in PROBLEM_TYPES.items():
        page = api.client.get(f"/problems/{name}")
        assert page.status_code == 200 and entry.title in page.text and "What to do" in page.text
        doc = api.client.get(f"/problems/{name}", headers={"accept": "application/json"}).json()
        assert doc["status"] == entry.status and doc["action"] == entry.action
    r = api.client.get("/problems/no-such-thing")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


def test_a_problem_answer_links_to_its_registered_type(api: Api):
    r = api.post("/v1/stock/receipts", {"sku": "S", "location": "L", "quantity": 0, "reference": "r"})
    assert r.status_code == 422
    name = r.json()["type"].removeprefix(TYPE_BASE)
    assert r.json()["type"].startswith(TYPE_BASE) and name in PROBLEM_TYPES
    assert api.client.get(f"/problems/{name}").status_code == 200


def problem_names_in_the_code() -> set[str]:
    names = set(SLUG_BY_STATUS.values())
    pattern = re.compile(r'(?:problem_response|Problem)\(\s*\d{3},\s*"([a-z0-9-]+)"')
    codes = re.compile(r'^\s+code = "([a-z0-9-]+)"', re.M)
    for package in ("api", "adapters", "projections", "ledger"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            names |= set(pattern.findall(text)) | set(codes.findall(text))
    return names


def test_every_problem_type_the_code_can_answer_is_registered():
    names = problem_names_in_the_code()
    assert {"validation-error", "insufficient-stock", "storage-unavailable"} <= names  # the scan works
    assert not names - set(PROBLEM_TYPES), (
        f"register these in api/problem_types.py: {sorted(names - set(PROBLEM_TYPES))}"
    )


def test_the_asyncapi_document_describes_every_subject_the_ledger_publishes(api: Api):
    doc = api.client.get("/asyncapi.json").json()
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {"ledger.ats.{channel}.{sku}", "ledger.orders.{order_id}", "ledger.exceptions.{kind}"}
    for message in doc["components"]["messages"].values():
        assert message["headers"]["required"] == ["Nats-Msg-Id"]
        schema = doc["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
        assert "position" in schema["required"]
