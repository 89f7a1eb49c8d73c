"""CLI for the read models: `ledger projections ...`, `ledger channels ...`, `ledger worker`."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import orjson
import typer

from cli.common import container as _container
from cli.common import print_table
from cli.common import settings as _settings

projections_app = typer.Typer(help="read models: status, rebuild", no_args_is_help=True)
channels_app = typer.Typer(help="channel policies: set, show", no_args_is_help=True)


@projections_app.command("status")
def status() -> None:
    """Each read model's position and lag."""
    from rich.table import Table

    c = _container()
    try:
        table = Table("name", "position", "head", "lag (positions)", "lag (s)", "updated")
        for r in c.projector.status():
            table.add_row(
                r["name"],
                str(r["position"]),
                str(r["head"]),
                str(r["lag_positions"]),
                str(r["lag_seconds"]),
                r["updated_at"] or "",
            )
        print_table(table)
    finally:
        c.close()


@projections_app.command("rebuild")
def rebuild_cmd(
    name: Annotated[str, typer.Argument(help="ats, stock or orders")],
    batch: Annotated[int, typer.Option(help="events per transaction")] = 5000,
) -> None:
    """Replay every event into shadow tables, then swap them in atomically (queries keep answering)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from projections.rebuild import NAMES, rebuild

    if name not in NAMES:
        typer.echo(f"unknown read model {name!r}; known: {', '.join(NAMES)}", err=True)
        raise typer.Exit(2)
    c = _container()
    try:
        with Progress(
            TextColumn(f"rebuilding {name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
        ) as bar:
            task = bar.add_task(name, total=None)

            def progress(position: int, head: int) -> None:
                bar.update(task, completed=position, total=head)

            result = rebuild(c.projector, name, progress=progress, batch_size=batch, by="cli")
        c.keys.audit("cli", "projection.rebuild", name, result)
        typer.echo(orjson.dumps(result).decode())
    finally:
        c.close()


def _count(text: str, option: str, what: str = "a whole number") -> int:
    """A whole number from an option's text; ValueError in plain words naming the option."""
    t = text.strip()
    if not t.lstrip("+-").isdigit():
        raise ValueError(f"{option} must be {what}, got {text!r}")
    return int(t)


@channels_app.command("set")
def channels_set(
    channel: Annotated[str, typer.Argument(help="the sales channel")],
    location: Annotated[list[str], typer.Option("--location", help="a fulfilling location, in order")],
    safety_stock: Annotated[str, typer.Option("--safety-stock", help="units held back per SKU")] = "0",
    buffer: Annotated[str, typer.Option(help="units (5) or a percentage (10%)")] = "0",
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="a SKU the channel never sells")
    ] = None,
    override: Annotated[
        list[str] | None, typer.Option("--override", help="SKU=N safety stock for one SKU")
    ] = None,
    include_incoming_days: Annotated[
        str, typer.Option("--include-incoming-days", help="count incoming units due within N days (0: none)")
    ] = "0",
    actor: Annotated[str, typer.Option(help="who makes the change")] = "cli",
) -> None:
    """Set a channel's policy (a new version; the runner recomputes its ATS)."""
    from adapters.channels import ChannelPolicy
    from ledger.errors import InvalidCommandError

    try:
        b = buffer.strip()
        what = "units (5) or a percentage (10%)"
        units, percent = (
            (0, _count(b[:-1], "--buffer", what)) if b.endswith("%") else (_count(b, "--buffer", what), 0)
        )
        overrides: dict[str, int] = {}
        for o in override or []:
            sku, sep, n = o.rpartition("=")
            if not sep or not sku.strip():
                raise ValueError(f"--override must be SKU=N, got {o!r}")
            overrides[sku.strip()] = _count(n, f"--override {sku.strip()}")
        policy = ChannelPolicy(
            channel=channel,
            locations=tuple(location),
            safety_stock=_count(safety_stock, "--safety-stock"),
            safety_stock_overrides=overrides,
            buffer_units=units,
            buffer_percent=percent,
            excluded_skus=frozenset(exclude or []),
            include_incoming_days=_count(include_incoming_days, "--include-incoming-days"),
        )
    except (ValueError, InvalidCommandError) as e:
        typer.echo(f"invalid policy: {e}", err=True)
        raise typer.Exit(2) from None
    c = _container()
    try:
        saved = c.channels.put(policy, actor)
        c.keys.audit(actor, "channel.set", channel, saved.as_dict())
        typer.echo(orjson.dumps(saved.as_dict(), option=orjson.OPT_INDENT_2).decode())
    finally:
        c.close()


@channels_app.command("show")
def channels_show(channel: Annotated[str, typer.Argument(help="the sales channel")]) -> None:
    """Show a channel's policy and its versions."""
    c = _container()
    try:
        history = c.channels.history(channel)
        if not history:
            typer.echo(f"channel {channel!r} has no policy", err=True)
            raise typer.Exit(1)
        for p in history:
            typer.echo(orjson.dumps(p.as_dict()).decode())
    finally:
        c.close()


def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve this process's Prometheus metrics (lag, outbox, queues) on this port"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="the address of the metrics port")] = "127.0.0.1",
) -> None:
    """Run the background workers (projection runner, NATS relay, sweepers) without HTTP."""
    from adapters.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level)
    c = _container(settings)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from adapters.metrics import REGISTRY

        try:
            start_http_server(metrics_port, addr=metrics_host, registry=REGISTRY)
        except OSError as e:
            c.close()
            typer.echo(
                f"ledger worker: cannot serve metrics on {metrics_host}:{metrics_port}: {e.strerror}",
                err=True,
            )
            raise typer.Exit(2) from None
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    c.start_workers()
    typer.echo(f"ledger worker running {len(c.workers)} workers; Ctrl-C stops")
    try:
        done.wait()
    finally:
        c.close()
