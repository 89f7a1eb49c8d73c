"""/openapi.json is a contract a client can be generated from: every operation's request and answers
typed, with descriptions and examples (each valid against its schema), and its problem answers
declared as problem+json of registered types, 503 with Retry-After included."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_api import Api
from jsonschema import Draft202012Validator

from api.problem_types import PROBLEM_TYPES

METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM = "#/components/schemas/Problem"
NO_STORAGE = {"/healthz", "/metrics"}


@pytest.fixture
def spec(api: Api) -> dict[str, Any]:
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def walk(
    spec: dict[str, Any], schema: Any, where: str, seen: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema reachable from `schema`, with where it sits (each component once)."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if ref is not None:
        if ref in seen:
            return
        seen.add(ref)
        yield from walk(spec, resolve(spec, schema), ref.rsplit("/", 1)[1], seen)
        return
    yield where, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(spec, sub, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties"):
        yield from walk(spec, schema.get(key), f"{where}[{key}]", seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, ())):
            yield from walk(spec, sub, f"{where}<{key}{i}>", seen)


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of `schema` that resolves `#/components/schemas/...` in the document."""
    return Draft202012Validator({**schema, "components": spec["components"]})


def json_schemas(op: dict[str, Any], status: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for media, content in op["responses"][status].get("content", {}).items():
        yield media, content.get("schema", {})


def test_every_operation_answers_a_typed_success(spec: dict[str, Any]):
    for path, method, op in operations(spec):
        name = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("description"), f"{name} needs a docstring"
        successes = [s for s in op["responses"] if s.startswith("2")]
        assert successes, f"{name} declares no 2xx answer"
        for status in successes:
            contents = list(json_schemas(op, status))
            assert contents, f"{name} {status} has no content"
            for media, schema in contents:
                if media == "application/json":
                    target = resolve(spec, schema)
                    assert "$ref" in schema and target.get("properties"), f"{name} {status}: untyped answer"
                    assert target.get("examples"), f"{name} {status}: {schema['$ref']} has no example"
                else:
                    assert schema.get("type") == "string", f"{name} {status} {media}"


def test_no_answer_or_body_is_left_untyped_or_undescribed(spec: dict[str, Any]):
    roots: list[tuple[str, dict[str, Any]]] = []
    for path, method, op in operations(spec):
        for status, answer in op["responses"].items():
            for _, content in answer.get("content", {}).items():
                roots.append((f"{method.upper()} {path} {status}", content.get("schema", {})))
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            assert media == "application/json"
            roots.append((f"{method.upper()} {path} body", content["schema"]))
    seen: set[str] = set()
    for name, root in roots:
        for where, schema in walk(spec, root, name, seen):
            assert schema != {}, f"{where} is untyped"
            if schema.get("type") == "object" and not schema.get("properties"):
                # a free-form object (an event's facts, Shopify's payload) must at least say what it holds
                assert schema.get("description") or "." in where, f"{where} is an untyped object"
            for prop, sub in schema.get("properties", {}).items():
                described = sub.get("description") or resolve(spec, sub).get("description")
                assert described, f"{where}.{prop} has no description"


def test_every_example_in_the_document_satisfies_its_schema(spec: dict[str, Any]):
    checked = 0
    for name, schema in spec["components"]["schemas"].items():
        for where, sub in walk(spec, schema, name, set()):
            for value in sub.get("examples", ()):
                errors = [
                    e.message
                    for e in validator(spec, {k: v for k, v in sub.items() if k != "examples"}).iter_errors(
                        value
                    )
                ]
                assert not errors, f"{where} example {value!r}: {errors}"
                checked += 1
    for path, _method, op in operations(spec):
        for param in op.get("parameters", ()):
            if "example" in param:
                assert not list(validator(spec, param["schema"]).iter_errors(param["example"])), param["name"]
                checked += 1
        for content in op.get("requestBody", {}).get("content", {}).values():
            if "example" in content:
                assert not list(validator(spec, content["schema"]).iter_errors(content["example"])), path
                checked += 1
    assert checked > 40  # the walk finds the examples


def test_every_request_body_is_typed_with_an_example(spec: dict[str, Any]):
    for path, method, op in operations(spec):
        body = op.get("requestBody")
        if body is None:
            continue
        content = body["content"]["application/json"]
        schema = resolve(spec, content["schema"])
        assert schema.get("examples") or content.get("example"), f"{method.upper()} {path}: no example"
        if path != "/v1/webhooks/shopify":  # Shopify's own payload, whatever the topic
            assert schema.get("properties"), f"{method.upper()} {path}: untyped body"


def test_every_problem_answer_is_problem_json_of_registered_types(spec: dict[str, Any]):
    for path, method, op in operations(spec):
        name = f"{method.upper()} {path}"
        for status, answer in op["responses"].items():
            if int(status) < 400:
                continue
            if (path, status) == ("/readyz", "503"):  # the readiness report itself, naming what is down
                assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Readiness")
                continue
            assert list(answer["content"]) == ["application/problem+json"], f"{name} {status}"
            assert answer["content"]["application/problem+json"]["schema"] == {"$ref": PROBLEM}
            types = answer["x-problem-types"]
            assert types, f"{name} {status} names no problem type"
            for t in types:
                assert t in PROBLEM_TYPES, f"{name} {status}: {t} is not registered"
                assert PROBLEM_TYPES[t].status == int(status), f"{name}: {t} is not a {status}"
                assert f"/problems/{t}" in answer["description"]
            if status == "503":
                assert "Retry-After" in answer["headers"], name


def test_each_operation_declares_the_problems_of_the_layers_it_passes(spec: dict[str, Any]):
    for path, method, op in operations(spec):
        name = f"{method.upper()} {path}"
        declared = {s: set(a.get("x-problem-types", ())) for s, a in op["responses"].items()}
        assert "validation-error" in declared["422"], name  # unknown query parameters, at least
        if op.get("security"):
            assert "unauthenticated" in declared["401"] and "forbidden" in declared["403"], name
        else:
            assert path in {"/healthz", "/readyz", "/metrics", "/v1/webhooks/shopify"}, f"{name} has no key"
        if "requestBody" in op:
            assert "body-too-large" in declared["413"], name
        if method == "post" and path != "/v1/webhooks/shopify":
            headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
            assert "Idempotency-Key" in headers, name
            assert "idempotency-key-reused" in declared["422"], name
        if path in NO_STORAGE:
            assert "503" not in declared, name
        elif path != "/readyz":
            assert declared["503"] == {"storage-unavailable"}, name


def test_the_declared_problems_are_the_ones_the_routes_answer(api: Api, spec: dict[str, Any]):
    """A sample of real answers: each status and type is declared on its operation."""

    def declared(path: str, method: str, status: int) -> set[str]:
        return set(spec["paths"][path][method]["responses"][str(status)]["x-problem-types"])

    missing = api.client.get("/v1/orders/nope", headers=api.auth("audit:read"))
    assert missing.status_code == 404
    assert missing.json()["type"].rsplit("/", 1)[1] in declared("/v1/orders/{order_id}", "get", 404)
    unknown = api.get("/v1/ats/nowhere/SKU-1", scope="ats:read")
    assert unknown.json()["type"].rsplit("/", 1)[1] in declared("/v1/ats/{channel}/{sku}", "get", 404)
    no_key = api.client.get("/v1/exceptions")
    assert no_key.json()["type"].rsplit("/", 1)[1] in declared("/v1/exceptions", "get", 401)
    typo = api.get("/v1/exceptions", kinds="drift")
    assert typo.status_code == 422 and "validation-error" in declared("/v1/exceptions", "get", 422)
    short = api.post(
        "/v1/orders",
        {"order_id": "o-1", "channel": "online", "lines": [{"line_id": "1", "sku": "NONE", "quantity": 1}]},
    )
    assert short.status_code in (404, 409, 422), short.text
    assert short.json()["type"].rsplit("/", 1)[1] in declared("/v1/orders", "post", short.status_code)


README = Path(__file__).resolve().parents[2] / "README.md"
ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`")


def readme_routes() -> dict[tuple[str, str], set[str]]:
    """`(method, path)` -> the scopes the README's API overview names for it."""
    text = README.read_text()
    table = text.split("## API overview", 1)[1].split("\n## ", 1)[0]
    found: dict[tuple[str, str], set[str]] = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        scope = cells[1]
        scopes = set() if scope in ("none", "Shopify HMAC") else {s.strip() for s in scope.split(" or ")}
        for method, path in ROUTE.findall(cells[0]):
            assert (method.lower(), path) not in found, f"{method} {path} is listed twice"
            found[(method.lower(), path)] = scopes
    return found


def test_the_readme_lists_every_operation_with_the_scopes_the_code_asks_for(spec: dict[str, Any]):
    listed = readme_routes()
    served = {(m, p): set(op.get("x-scopes", ())) for p, m, op in operations(spec)}
    assert set(listed) == set(served), (
        f"in the code, not the README: {sorted(set(served) - set(listed))}; "
        f"in the README, not the code: {sorted(set(listed) - set(served))}"
    )
    wrong = {k: (listed[k], served[k]) for k in served if listed[k] != served[k]}
    assert not wrong, f"README scope vs code: {wrong}"
    assert served[("get", "/v1/channels/{channel}")] == {"audit:read"}  # the README once said admin
