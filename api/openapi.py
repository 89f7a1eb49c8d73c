"""The OpenAPI document: each operation's real problem answers, from one place.

A route declares only what its own code can answer (`problems("order-not-found", ...)` in its
decorator). What the layers around every route can answer is added here, by the route's shape:

- a bearer key (`security`): 401 `unauthenticated`, 403 `forbidden`;
- a body (POST, PUT): 400 `malformed-json`, 413 `body-too-large`, 415 `unsupported-media-type`
  (`api.middleware.BodyGuard`), 422 `validation-error`;
- every POST but the Shopify webhook: the `Idempotency-Key` header (`api.idempotency`), with
  409 `idempotency-key-in-progress` and 422 `idempotency-key-reused`;
- every route: 422 `validation-error` (an unknown or repeated query parameter: `checked_query`);
- every route that reads or writes the database: 503 `storage-unavailable` with `Retry-After`.

Each problem answer is `application/problem+json` with the `Problem` schema, and names the
problem types it can carry in `x-problem-types` (each described at `/problems/{name}`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from api.models import ProblemDoc, problem_answer

# Routes that touch no database: they never answer 503 storage-unavailable.
NO_STORAGE = frozenset({"/healthz", "/metrics"})
# Routes whose raw body is checked by the route itself (Shopify's HMAC), without an Idempotency-Key.
RAW_BODY = frozenset({"/v1/webhooks/shopify"})

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A repeat with the same key and body returns the first answer and appends nothing; "
    "the same key with another body is refused (422 `idempotency-key-reused`). Kept 24 hours.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "example": "3f1c9d2e-order-1001",
}


def _add(responses: dict[str, Any], status: int, *slugs: str) -> None:
    """Adds problem types to an operation's `status` answer (made a problem answer if needed)."""
    key = str(status)
    current = responses.get(key)
    known = list(current.get("x-problem-types", ())) if current else []
    if current is not None and "x-problem-types" not in current:
        # FastAPI's own 422 (HTTPValidationError) is replaced: our validation answers are problems.
        if status != 422:
            return
        current = None
    merged = problem_answer(status, [*known, *slugs])
    if current is not None and "headers" in current:
        merged["headers"] = {**current["headers"], **merged.get("headers", {})}
    responses[key] = merged


def _describe_operation(path: str, method: str, op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    for key, answer in list(responses.items()):
        if "x-problem-types" in answer:  # FastAPI adds an empty application/json next to ours
            responses[key] = problem_answer(int(key), answer["x-problem-types"])
    if op.get("security"):
        _add(responses, 401, "unauthenticated")
        _add(responses, 403, "forbidden")
    if method in ("post", "put", "patch"):
        _add(responses, 413, "body-too-large")
        if path not in RAW_BODY:
            _add(responses, 400, "malformed-json")
            _add(responses, 415, "unsupported-media-type")
    if method == "post" and path not in RAW_BODY:
        params = op.setdefault("parameters", [])
        if not any(
            p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key" for p in params
        ):
            params.append(dict(IDEMPOTENCY_KEY))
        _add(responses, 409, "idempotency-key-in-progress")
        _add(responses, 422, "idempotency-key-reused")
    _add(responses, 422, "validation-error")
    if path not in NO_STORAGE:
        _add(responses, 503, "storage-unavailable")
    op["responses"] = dict(sorted(responses.items()))


def _unused(spec: dict[str, Any], name: str) -> bool:
    import orjson

    ref = f'"#/components/schemas/{name}"'.encode()
    return ref not in orjson.dumps(spec["paths"]) and ref not in orjson.dumps(
        {k: v for k, v in spec["components"]["schemas"].items() if k != name}
    )


def route_models(routes: list[Any]) -> list[type[BaseModel]]:
    """The request and answer models of `routes` (FastAPI's document is built from them)."""
    found: list[type[BaseModel]] = []
    for route in routes:
        included = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.16x)
        if included is not None:
            found += route_models(included.routes)
            continue
        body = getattr(getattr(route, "body_field", None), "field_info", None)
        for model in (getattr(route, "response_model", None), getattr(body, "annotation", None)):
            if isinstance(model, type) and issubclass(model, BaseModel):
                found.append(model)
    return found


def _restore_examples(schemas: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """Puts back the `null`s of the models' examples: FastAPI's encoder drops every None it meets,
    and an example without its required nulls no longer satisfies its own schema."""
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in [(model.__name__, schema), *schema.get("$defs", {}).items()]:
            if "examples" in definition and name in schemas and "examples" in schemas[name]:
                schemas[name]["examples"] = definition["examples"]


def describe(
    spec: dict[str, Any],
    models: list[type[BaseModel]] | None = None,
    scopes: dict[tuple[str, str], list[str]] | None = None,
) -> dict[str, Any]:
    """Adds every operation's problem answers and scopes, and the `Problem` schema, to a generated document."""
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            if method in ("get", "put", "post", "delete", "patch"):
                needed = (scopes or {}).get((method, path)) or op.get("x-scopes")
                if needed:
                    op["x-scopes"] = needed
                    op["description"] = (
                        f"{op.get('description', '')}\n\nScope: {' or '.join(f'`{s}`' for s in needed)} "
                        "(`admin` holds every scope)."
                    ).strip()
                _describe_operation(path, method, op)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    _restore_examples(schemas, models or [])
    _add_model(schemas, "Problem", ProblemDoc, "serialization")
    for name, model in BODIES.items():
        _add_model(schemas, name, model, "validation")
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and _unused(spec, name):
            del schemas[name]
    return spec


def operation_id(route: Any) -> str:
    """A route's operation id, its generated client function: `{tag}_{function}` (`orders_capture`)."""
    return f"{route.tags[0]}_{route.name}" if route.tags else str(route.name)


def install(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Makes `app.openapi()` build the described document (once; it is kept)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            app.openapi_schema = describe(spec, route_models(app.routes), route_scopes(app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise it
    return openapi


def keyed(check: Callable[..., Any]) -> dict[str, Any]:
    """`openapi_extra=` for a route that calls its scope check itself (the ATS reads, without a
    dependency's cost): the bearer scheme and the scopes, as a `require(...)` dependency declares them."""
    return {"security": [{"bearer": []}], "x-scopes": list(check.scopes)}  # type: ignore[attr-defined]  # set by require


def _scopes(dependant: Any) -> list[str]:
    for dep in getattr(dependant, "dependencies", ()):
        scopes = getattr(dep.call, "scopes", None)
        if scopes is not None:
            return list(scopes)
        found = _scopes(dep)
        if found:
            return found
    return []


def route_scopes(routes: list[Any]) -> dict[tuple[str, str], list[str]]:
    """`(method, path)` -> the scopes a key needs (any of them; admin holds all), per `require(...)`."""
    found: dict[tuple[str, str], list[str]] = {}
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found.update(route_scopes(included.routes))
            continue
        scopes = _scopes(getattr(route, "dependant", None))
        for method in getattr(route, "methods", ()) if scopes else ():
            found[(method.lower(), route.path_format)] = scopes
    return found


# Bodies a route reads itself (`read_json`: the raw bytes are kept for audit), by component name.
BODIES: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], name: str, description: str | None = None) -> dict[str, Any]:
    """`openapi_extra=` declaring the JSON body a route validates itself with `model`; the model's
    schema is added to the components as `name` (its examples come with it)."""
    BODIES[name] = model
    return {
        "requestBody": {
            "required": True,
            "description": description or (model.__doc__ or "").strip(),
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


def _add_model(schemas: dict[str, Any], name: str, model: type[BaseModel], mode: JsonSchemaMode) -> None:
    """Adds `model`'s schema as `name`, and the schemas it refers to under their own names."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for sub, definition in schema.pop("$defs", {}).items():
        if schemas.setdefault(sub, definition) != definition:
            raise ValueError(f"two schemas are named {sub}: rename one")
    schema["title"] = name
    schemas[name] = schema
