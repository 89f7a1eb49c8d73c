"""What every command needs: the settings (a clear exit on bad configuration) and the container."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError

from adapters.config import Settings

if TYPE_CHECKING:
    from bootstrap import Container


def settings() -> Settings:
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


def container() -> Container:
    """The service built from the environment (`bootstrap()`); the caller closes it."""
    from bootstrap import bootstrap

    return bootstrap(settings())
