"""The FastAPI application: lifespan wiring, problem answers, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from adapters.config import Settings
from adapters.logs import configure_logging
from api import asyncapi, openapi, problem_types, problems
from api.console import routes as console_routes
from api.console.session import Sessions
from api.deps import checked_query
from api.fastpath import FastPath, Lean
from api.idempotency import Idempotency
from api.middleware import BodyGuard, PathIds, RequestContext, StorageGuard
from api.routes import (
    ats,
    channels,
    compliance,
    health,
    inbox,
    locations,
    mappings,
    metrics,
    orders,
    pos,
    reconciliations,
    reservations,
    stock,
    webhooks,
)
from api.routes import erp as erp_routes
from api.routes import exceptions as exception_routes
from api.routes import explain as explain_routes
from api.routes import projections as projection_routes
from api.routes import shopify as shopify_routes
from bootstrap import Container, bootstrap

# Routes are matched in this order, one router after another: the hot ATS read goes first.
ROUTERS = [ats.router, health.router, metrics.router, stock.router, orders.router]
ROUTERS += [webhooks.router, pos.router, erp_routes.router, mappings.router, inbox.router]
ROUTERS += [reconciliations.router, shopify_routes.router, compliance.router, reservations.router]
ROUTERS += [locations.router]
ROUTERS += [channels.router, projection_routes.router, exception_routes.router]
ROUTERS += [explain_routes.router, console_routes.router, asyncapi.router, problem_types.router]
# The routes the lean path answers when it can (api.fastpath): the ATS point query, the hot writes.
LEAN: list[Lean] = [*ats.LEAN, *orders.LEAN, *stock.LEAN, *pos.LEAN, *webhooks.LEAN]


def attach(app: FastAPI, container: Container) -> None:
    """Serves `container` from `app`: routes find it (and the console's sessions) on `app.state`."""
    app.state.container = container
    app.state.sessions = Sessions(container.db, container.keys)
    metrics.instrument(container.ledger)


def api_process() -> FastAPI:
    """The app of one API process of `ledger serve --workers N` (uvicorn's factory, called in each
    spawned process): its own container from the environment, like `ledger serve --no-workers`;
    the supervising process runs the background workers once for all of them."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings, run_workers=False)


def create_app(
    settings: Settings | None = None,
    container: Container | None = None,
    run_workers: bool | None = None,
    lean: bool = True,
) -> FastAPI:
    """Builds the app. With `container`, the caller owns it (tests); else the lifespan builds one.
    `lean=False` leaves the lean path out: every request goes through its FastAPI route (tests
    compare the two)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = container is None
        c = container or bootstrap(settings)
        attach(app, c)
        workers = c.settings.run_workers if run_workers is None else run_workers
        if workers and owned:
            c.start_workers()
        try:
            yield
        finally:
            if owned:
                c.close()

    # /docs and /redoc with the Swagger UI and ReDoc assets the fastapi-offline package ships: no CDN.
    app = FastAPIOffline(
        static_url="/docs-assets",
        swagger_ui_parameters={"persistAuthorization": True},
        title="ledger",
        version="0.1.0",
        description="Event-sourced inventory and order ledger: stock movements and order stages as facts.",
        lifespan=lifespan,
        dependencies=[Depends(checked_query)],
        generate_unique_id_function=openapi.operation_id,
    )
    if container is not None:
        attach(app, container)
    problems.install(app)
    openapi.install(app)  # each operation's real problem answers (api.openapi)
    for router in ROUTERS:
        app.include_router(router)
    # Outermost last: request ids and access log, then the body guard, then Idempotency-Key,
    # then the lean path of the hottest routes (api.fastpath).
    if lean:
        app.add_middleware(FastPath, routes=LEAN)
    app.add_middleware(Idempotency)
    app.add_middleware(StorageGuard)  # a database outage in the layers above answers 503, not 500
    app.add_middleware(BodyGuard)
    app.add_middleware(RequestContext)
    app.add_middleware(PathIds)  # before anything reads the path: two-id routes keep `/` in an id
    return app
