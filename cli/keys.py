"""`ledger keys ...`: create, list and revoke API keys (the first-start admin key too)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import print_table
from cli.common import settings as _settings

if TYPE_CHECKING:
    from adapters.keys import ApiKeys

keys_app = typer.Typer(help="API keys: create, list, revoke", no_args_is_help=True)


def first_start_key(keys: ApiKeys) -> str | None:
    """On a database with no active key, creates an admin key and returns its token (shown once)."""
    if keys.count_active() > 0:
        return None
    return keys.create("bootstrap-admin", ["admin"], created_by="first-start")[1]


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
        print_table(table)
    finally:
        db.close()
