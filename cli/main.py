"""The `ledger` command line: `serve`, `remap`, `reconcile`, and the command groups."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer

from bench.cli import bench_app
from cli.common import container as _container
from cli.common import settings as _settings
from cli.keys import first_start_key, keys_app
from cli.mappings import mappings_app
from cli.projections import channels_app, projections_app, worker

app = typer.Typer(
    help="ledger: event-sourced inventory and order ledger", no_args_is_help=True, add_completion=False
)
app.add_typer(keys_app, name="keys")
app.add_typer(mappings_app, name="mappings")
app.add_typer(projections_app, name="projections")
app.add_typer(channels_app, name="channels")
app.add_typer(bench_app, name="bench")  # the benchmarks' commands import their code when run


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

    from adapters.logs import configure_logging
    from api.app import create_app
    from bootstrap import bootstrap

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


@app.command()
def remap(
    source: Annotated[str, typer.Argument(help="shopify, pos or erp")],
    kind: Annotated[str, typer.Argument(help="sku, location or channel")],
    external_id: Annotated[str, typer.Argument(help="the outside code whose mapping was fixed")],
    actor: Annotated[str, typer.Option(help="who asks")] = "cli",
) -> None:
    """Re-translate the inbound messages that used a mapping; mis-posted movements get corrections."""
    import orjson

    from adapters.mappings import check_mapping

    try:
        check_mapping(source, kind, external_id)
    except ValueError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    container = _container()
    try:
        answer = container.remapper.remap(source, kind, external_id, actor)
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

    from adapters.reconciliation import report as reports
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
    container = _container()
    try:
        report = container.reconciler.reconcile(snap)
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


app.command("worker")(worker)


def main() -> None:
    app(prog_name="ledger")


if __name__ == "__main__":
    main()
