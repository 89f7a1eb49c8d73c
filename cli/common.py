"""What every command needs: the settings (a clear exit on bad configuration) and the container.

Exit codes shared by every command: 0 done, 1 the command found something to act on (drift),
2 bad input or configuration, or a service the command needs cannot be reached. Errors are one
line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click
import typer
from pydantic import ValidationError

from adapters.config import Settings

if TYPE_CHECKING:
    from bootstrap import Container

GROUPS = ("keys", "mappings", "projections", "channels", "bench")  # commands with subcommands
CONNECT_TIMEOUT = 5  # seconds, when LEDGER_DATABASE_URL sets no connect_timeout


def command_name() -> str:
    """`ledger serve`, `ledger keys list`, ...: the command being run, for one-line errors."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        return ctx.command_path
    words = [w for w in sys.argv[1:3] if not w.startswith("-")]
    return " ".join(["ledger", *words[: 2 if words and words[0] in GROUPS else 1]])


def fail(message: str) -> typer.Exit:
    """Prints one line on stderr; the caller raises the answer (exit code 2)."""
    typer.echo(message, err=True)
    return typer.Exit(2)


def settings(reach_database: bool = True) -> Settings:
    """The checked settings; exits 2 with one line per bad variable, or when the database
    cannot be reached (`database_reachable`)."""
    try:
        checked = Settings()
    except ValidationError as e:  # one line per bad variable, each naming it
        for error in e.errors():
            msg = str(error["msg"]).removeprefix("Value error, ")
            if not msg.startswith("LEDGER_"):
                name = "LEDGER_" + "_".join(str(part) for part in error["loc"]).upper()
                msg = f"{name}: {msg}"
            typer.echo(msg, err=True)
        raise typer.Exit(2) from None
    except Exception as e:
        raise fail(f"configuration error: {e}") from None
    if reach_database:
        database_reachable(checked.database_url)
    return checked


def database_reachable(url: str) -> None:
    """Exits 2 with one line when a PostgreSQL URL cannot be connected to, within the URL's
    `connect_timeout` (or CONNECT_TIMEOUT). The line names the hosts and ports, never the password."""
    from adapters.persistence.urls import is_postgres, pg_params

    if not is_postgres(url):
        return
    import psycopg
    from psycopg.conninfo import make_conninfo

    params, _ = pg_params(url)
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    hosts = params.get("host", "localhost").split(",")
    ports = params.get("port", "5432").split(",")
    where = ",".join(f"{h}:{ports[min(i, len(ports) - 1)]}" for i, h in enumerate(hosts))
    try:
        psycopg.connect(make_conninfo(**params)).close()
    except psycopg.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[0].removeprefix("connection failed: ") if lines else type(e).__name__
        password = params.get("password")
        if password:
            reason = reason.replace(password, "***")
        raise fail(f"{command_name()}: cannot reach the database at {where}: {reason}") from None


def container(checked: Settings | None = None) -> Container:
    """The service built from the environment (`bootstrap()`); the caller closes it."""
    from bootstrap import bootstrap

    return bootstrap(checked or settings())


def print_table(table: Any) -> None:
    """Prints a rich table that wraps long cells (ids, explanations) onto more lines instead of
    cutting them with an ellipsis, at the terminal's width (80 columns when not a terminal)."""
    from rich.console import Console, Group
    from rich.table import Table

    for part in table.renderables if isinstance(table, Group) else [table]:
        if isinstance(part, Table):
            for column in part.columns:
                column.overflow = "fold"
                column.no_wrap = False
    Console().print(table)
