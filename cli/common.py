"""What every command needs: the settings (a clear exit on bad configuration) and the container."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from adapters.config import Settings

if TYPE_CHECKING:
    from bootstrap import Container


def settings() -> Settings:
    try:
        return Settings()
    except Exception as e:  # pydantic's message names the bad variable
        typer.echo(f"configuration error: {e}", err=True)
        raise typer.Exit(2) from None


def container() -> Container:
    """The service built from the environment (`bootstrap()`); the caller closes it."""
    from bootstrap import bootstrap

    return bootstrap(settings())
