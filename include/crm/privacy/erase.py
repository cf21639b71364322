"""Placeholder: being written (crm privacy)."""

from __future__ import annotations

import typer


def erase_cmd() -> None:
    """Not built yet."""
    raise typer.Exit(2)
