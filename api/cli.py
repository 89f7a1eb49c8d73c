"""The `ledger` command line: serve, keys, and the operator commands."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from adapters.config import Settings

if TYPE_CHECKING:
    from adapters.keys import ApiKeys

app = typer.Typer(
    help="ledger: event-sourced inventory and order ledger", no_args_is_help=True, add_completion=False
)
keys_app = typer.Typer(help="API keys: create, list, revoke", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

from bench.cli import bench_app  # noqa: E402  (the benchmarks' commands import their code lazily)

app.add_typer(bench_app, name="bench")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:  # one line per bad variable, each naming it
        for error in e.errors():
            name = "LEDGER_" + "_".join(str(part) for part in error["loc"]).upper()
            msg = error["msg"].removeprefix("Value error, ")
            typer.echo(f"configuration error: {msg if msg.startswith(name) else f'{name}: {msg}'}", err=True)
        raise typer.Exit(2) from None
    except Exception as e:
        typer.echo(f"configuration error: {e}", err=True)
        raise typer.Exit(2) from None


def first_start_key(keys: ApiKeys) -> str | None:
    """On a database with no active key, creates an admin key and returns its token (shown once)."""
    if keys.count_active() > 0:
        return None
    return keys.create("bootstrap-admin", ["admin"], created_by="first-start")[1]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[
        bool, typer.Option(help="run the projection worker and publisher in this process")
    ] = True,
) -> None:
    """Serve the HTTP API (with the projection worker and the publisher, by default)."""
    import uvicorn

    from adapters.bootstrap import bootstrap
    from adapters.logs import configure_logging
    from api.app import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    container = bootstrap(settings)
    token = first_start_key(container.keys)
    if token is not None:
        typer.echo("No API key existed, so a one-time admin key was created. It is shown only now:")
        typer.echo(f"  {token}")
    typer.echo(
        f"ledger serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs, "
        f"console: http://{host}:{port}/console)"
    )
    if workers and settings.run_workers:
        container.start_workers()
    try:
        uvicorn.run(create_app(container=container), host=host, port=port, log_config=None, access_log=False)
    finally:
        container.close()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="who or what uses the key")],
    scope: Annotated[list[str], typer.Option("--scope", help="ats:read, audit:read, ingest:write or admin")],
    expires: Annotated[str | None, typer.Option(help="expiry, RFC 3339")] = None,
) -> None:
    """Create a key; the bearer token is printed once, as the last line."""
    from adapters.keys import ApiKeys
    from adapters.persistence.db import Database
    from adapters.persistence.migrate import migrate

    settings = _settings()
    db = Database(settings.database_url)
    try:
        migrate(db)
        keys = ApiKeys(db)
        try:
            expires_at = datetime.fromisoformat(expires) if expires else None
            key_id, token = keys.create(name, scope, expires_at=expires_at)
        except ValueError as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from None
        typer.echo(f"key {key_id} ({name}) with scopes {' '.join(sorted(set(scope)))}")
        typer.echo(token)
    finally:
        db.close()


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key id")]) -> None:
    """Revoke a key at once."""
    from adapters.keys import ApiKeys
    from adapters.persistence.db import Database
    from adapters.persistence.migrate import migrate

    db = Database(_settings().database_url)
    try:
        migrate(db)
        keys = ApiKeys(db)
        if not keys.revoke(key_id):
            typer.echo(f"no active key {key_id}", err=True)
            raise typer.Exit(1)
        typer.echo(f"revoked {key_id}")
    finally:
        db.close()


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their tokens)."""
    from rich.console import Console
    from rich.table import Table

    from adapters.keys import ApiKeys
    from adapters.persistence.db import Database
    from adapters.persistence.migrate import migrate

    db = Database(_settings().database_url)
    try:
        migrate(db)
        keys = ApiKeys(db)
        table = Table("id", "name", "scopes", "created", "expires", "revoked")
        for k in keys.list():
            table.add_row(
                k["id"], k["name"], k["scopes"], k["created_at"], k["expires_at"] or "", k["revoked_at"] or ""
            )
        Console().print(table)
    finally:
        db.close()


mappings_app = typer.Typer(help="mappings of Shopify, POS and ERP codes: set, list", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")


@mappings_app.command("set")
def mappings_set(
    source: Annotated[str, typer.Argument(help="shopify, pos or erp")],
    kind: Annotated[str, typer.Argument(help="sku, location or channel")],
    external_id: Annotated[str, typer.Argument(help="the outside code")],
    canonical: Annotated[str, typer.Argument(help="the canonical name")],
    actor: Annotated[str, typer.Option(help="who makes the change")] = "cli",
) -> None:
    """Set a mapping (a new version); parked messages that needed it are retried by the inbox worker."""
    from adapters.bootstrap import bootstrap
    from adapters.mappings import mapping_key

    container = bootstrap(_settings())
    try:
        try:
            change = container.extras["mappings"].set(source, kind, external_id, canonical, actor)
        except Exception as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from None
        key = mapping_key(source, kind, external_id)
        if change["changed"]:
            container.keys.audit(
                actor,
                "mapping.set",
                key,
                {"old": change["old"], "new": canonical, "version": change["version"]},
            )
            requeued = container.extras["inbox"].requeue_using(key)
            typer.echo(
                f"{key} -> {canonical} (version {change['version']}, was {change['old']}); "
                f"{len(requeued)} parked message(s) requeued"
            )
        else:
            typer.echo(f"{key} -> {canonical} unchanged (version {change['version']})")
    finally:
        container.close()


@mappings_app.command("list")
def mappings_list(source: Annotated[str | None, typer.Option(help="only this source")] = None) -> None:
    """List current mappings."""
    from rich.console import Console
    from rich.table import Table

    from adapters.bootstrap import bootstrap

    container = bootstrap(_settings())
    try:
        table = Table("source", "kind", "external id", "canonical", "version", "by", "at")
        for m in container.extras["mappings"].list(source):
            table.add_row(
                m["source"],
                m["kind"],
                m["external_id"],
                m["canonical"],
                str(m["version"]),
                m["updated_by"],
                m["updated_at"],
            )
        Console().print(table)
    finally:
        container.close()


@app.command()
def remap(
    source: Annotated[str, typer.Argument(help="shopify, pos or erp")],
    kind: Annotated[str, typer.Argument(help="sku, location or channel")],
    external_id: Annotated[str, typer.Argument(help="the outside code whose mapping was fixed")],
    actor: Annotated[str, typer.Option(help="who asks")] = "cli",
) -> None:
    """Re-translate the inbound messages that used a mapping; mis-posted movements get corrections."""
    import orjson

    from adapters.bootstrap import bootstrap
    from adapters.mappings import check_mapping

    try:
        check_mapping(source, kind, external_id)
    except ValueError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    container = bootstrap(_settings())
    try:
        answer = container.extras["remapper"].remap(source, kind, external_id, actor)
        typer.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    finally:
        container.close()


@app.command()
def reconcile(
    source: Annotated[str, typer.Argument(help="shopify, erp or pos")],
    file: Annotated[str, typer.Argument(help="levels as JSON or CSV (sku,location,quantity); - for stdin")],
    observed_at: Annotated[
        str | None, typer.Option("--observed-at", help="when the levels were taken, RFC 3339")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
) -> None:
    """Reconcile outside levels with the ledger as of their moment; mismatches with their causes."""
    import orjson
    from rich.console import Console

    from adapters.bootstrap import bootstrap
    from adapters.reconciliation import report as reports
    from adapters.reconciliation import wiring
    from adapters.reconciliation.sources import SnapshotError, read_file
    from ledger.errors import LedgerError

    if format not in ("table", "json", "csv"):
        typer.echo("--format must be table, json or csv", err=True)
        raise typer.Exit(2)
    try:
        at = datetime.fromisoformat(observed_at.replace("Z", "+00:00")) if observed_at else None
        text = sys.stdin.read() if file == "-" else open(file, encoding="utf-8-sig").read()
        snap = read_file(source, text, at, name=file)
    except (OSError, ValueError, SnapshotError) as e:
        typer.echo(f"cannot read {file}: {e}", err=True)
        raise typer.Exit(2) from None
    container = bootstrap(_settings())
    try:
        report = wiring.build(container).reconcile(snap)
    except LedgerError as e:
        typer.echo(f"refused: {e.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        container.close()
    if format == "json":
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif format == "csv":
        sys.stdout.write(reports.to_csv(report))
    else:
        Console(width=200).print(reports.to_table(report))
    if report["exceptions"]["drift"]:
        raise typer.Exit(1)


from api.cli_projections import register as register_projections  # noqa: E402

register_projections(app)


def main() -> None:
    app(prog_name="ledger")


if __name__ == "__main__":
    sys.exit(main())
