"""The `ledger` command line: `serve`, `remap`, `reconcile`, and the command groups."""

from __future__ import annotations

import errno
import socket
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from bench.cli import bench_app
from cli.common import container as _container
from cli.common import fail, print_table
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
        int,
        typer.Option(
            "--workers",
            min=1,
            help="API processes serving the port (uvicorn workers, each with its own writer; "
            "more than 1 needs PostgreSQL)",
        ),
    ] = 1,
    no_workers: Annotated[
        bool,
        typer.Option(
            "--no-workers",
            help="HTTP only: no projection runner, publisher or inbox worker here (run `ledger worker` beside)",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (with the projection worker and the publisher, by default).

    With `--workers N` (N > 1) this process binds the port, runs the background workers once (what
    `ledger worker` runs, unless `--no-workers`) and supervises N API processes that share the
    port, each like `ledger serve --no-workers`.

    Exit codes: 2 when a LEDGER_* variable is bad, the database cannot be reached, the port
    cannot be bound, or --workers N > 1 is asked for on SQLite (one line on stderr, before anything
    is served).
    """
    import uvicorn

    from adapters.logs import configure_logging
    from adapters.persistence.urls import is_postgres
    from api.app import create_app

    settings = _settings()
    if workers > 1 and not is_postgres(settings.database_url):
        raise fail(
            "ledger serve: --workers N > 1 needs PostgreSQL (LEDGER_DATABASE_URL is SQLite, a database "
            "of one process)"
        )
    sock = _bind(host, port)  # before anything says "serving": a busy port is one line, exit 2
    if not settings.webhook_secrets:
        typer.echo(
            "warning: LEDGER_SHOPIFY_WEBHOOK_SECRETS is empty, so every Shopify webhook will be refused (401)",
            err=True,
        )
    configure_logging(settings.log_level)
    container = _container(settings)
    token = first_start_key(container.keys)
    if token is not None:
        typer.echo("No API key existed, so a one-time admin key was created. It is shown only now:")
        typer.echo(f"  {token}")
    processes = f" by {workers} API processes" if workers > 1 else ""
    typer.echo(
        f"ledger serving on http://{host}:{port}{processes}  (API docs: http://{host}:{port}/docs, "
        f"console: http://{host}:{port}/console)"
    )
    if not no_workers and settings.run_workers:
        container.start_workers()
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            # Each API process imports the factory and builds its own container from the same
            # environment (api.app.api_process); this one only supervises them and runs the workers.
            config = uvicorn.Config(
                "api.app:api_process", factory=True, workers=workers, log_config=None, access_log=False
            )
            Multiprocess(config, sockets=[sock]).run()
        else:
            config = uvicorn.Config(create_app(container=container), log_config=None, access_log=False)
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        container.close()
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line on stderr and exit 2."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise fail(f"ledger serve: cannot bind {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        reason = "the port is already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise fail(f"ledger serve: cannot bind {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


@app.command()
def remap(
    source: Annotated[str, typer.Argument(help="shopify, pos or erp")],
    kind: Annotated[str, typer.Argument(help="sku, location or channel")],
    external_id: Annotated[str, typer.Argument(help="the outside code whose mapping was fixed")],
    actor: Annotated[str, typer.Option(help="who asks")] = "cli",
) -> None:
    """Re-translate the inbound messages that used a mapping; mis-posted movements get corrections.

    The mapping must exist (`ledger mappings set` first). Exit codes: 0 done; 2 bad arguments,
    an unknown mapping, or bad configuration.
    """
    import orjson

    from adapters.mappings import check_mapping

    try:
        check_mapping(source, kind, external_id)
    except ValueError as e:
        raise fail(f"ledger remap: {e}") from None
    container = _container()
    try:
        if container.mappings.get(source, kind, external_id) is None:
            raise fail(
                f"ledger remap: there is no {source} {kind} mapping for {external_id!r}; "
                f"set it first with `ledger mappings set {source} {kind} {external_id} <canonical>`"
            )
        answer = container.remapper.remap(source, kind, external_id, actor)
        typer.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    finally:
        container.close()


@app.command()
def reconcile(
    source: Annotated[str, typer.Argument(help="shopify, erp or pos")],
    file: Annotated[
        str,
        typer.Argument(
            help="levels as JSON ({observed_at?, levels: [{sku, location, quantity, observed_at?}]}) "
            "or CSV (sku,location,quantity[,observed_at]); - for stdin"
        ),
    ],
    observed_at: Annotated[
        str | None,
        typer.Option(
            "--observed-at",
            help="when the levels were taken, RFC 3339. Default: the file's observed_at; else the "
            "latest of its rows' observed_at; else now. A row's own observed_at always wins for that row.",
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="compare only: no run is recorded, no drift exception is opened or closed"
        ),
    ] = False,
) -> None:
    """Reconcile outside levels with the ledger as of their moment; mismatches with their causes.

    Exit codes: 0 no drift; 1 drift found (mismatches beyond the source's threshold); 2 bad input
    (arguments, file, configuration) or the database cannot be reached.
    """
    import orjson

    from adapters.reconciliation import report as reports
    from adapters.reconciliation.sources import SnapshotError, read_file
    from ledger.errors import LedgerError

    if source not in ("shopify", "erp", "pos"):
        raise fail(f"ledger reconcile: SOURCE must be shopify, erp or pos, got {source!r}")
    if format not in ("table", "json", "csv"):
        raise fail("ledger reconcile: --format must be table, json or csv")
    at = None
    if observed_at:
        try:
            at = datetime.fromisoformat(observed_at.strip().replace("Z", "+00:00"))
        except ValueError:
            raise fail(
                f"ledger reconcile: --observed-at must be an RFC 3339 time such as "
                f"2026-05-01T12:00:00Z, got {observed_at!r}"
            ) from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    try:
        text = sys.stdin.read() if file == "-" else open(file, encoding="utf-8-sig").read()
    except OSError as e:
        raise fail(f"ledger reconcile: cannot read {file}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise fail(f"ledger reconcile: cannot read {file}: it is not UTF-8 text") from None
    try:
        snap = read_file(source, text, at, name=file, default=datetime.now(UTC))
    except SnapshotError as e:
        raise fail(f"ledger reconcile: {e}") from None
    container = _container()
    try:
        report = container.reconciler.reconcile(snap, dry_run=dry_run)
    except LedgerError as e:
        raise fail(f"ledger reconcile: refused: {e.message}") from None
    finally:
        container.close()
    if format == "json":
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif format == "csv":
        sys.stdout.write(reports.to_csv(report))
    else:
        print_table(reports.to_table(report))
    if report["exceptions"]["drift"]:
        raise typer.Exit(1)


app.command("worker")(worker)


def main() -> None:
    app(prog_name="ledger")


if __name__ == "__main__":
    main()
