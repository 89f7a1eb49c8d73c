"""`ledger mappings ...`: set and list the mappings of Shopify, POS and ERP codes."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import container as _container
from cli.common import print_table

mappings_app = typer.Typer(help="mappings of Shopify, POS and ERP codes: set, list", no_args_is_help=True)


@mappings_app.command("set")
def mappings_set(
    source: Annotated[str, typer.Argument(help="shopify, pos or erp")],
    kind: Annotated[str, typer.Argument(help="sku, location or channel")],
    external_id: Annotated[str, typer.Argument(help="the outside code")],
    canonical: Annotated[str, typer.Argument(help="the canonical name")],
    actor: Annotated[str, typer.Option(help="who makes the change")] = "cli",
) -> None:
    """Set a mapping (a new version); parked messages that needed it are retried by the inbox worker."""
    from adapters.mappings import mapping_key

    container = _container()
    try:
        try:
            change = container.mappings.set(source, kind, external_id, canonical, actor)
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
            requeued = container.inbox.requeue_using(key)
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
    from rich.table import Table

    container = _container()
    try:
        table = Table("source", "kind", "external id", "canonical", "version", "by", "at")
        for m in container.mappings.list(source):
            table.add_row(
                m["source"],
                m["kind"],
                m["external_id"],
                m["canonical"],
                str(m["version"]),
                m["updated_by"],
                m["updated_at"],
            )
        print_table(table)
    finally:
        container.close()
