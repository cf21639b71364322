"""``crm feeds``: commands on the feed registry.

Cheap to import (``crm`` mounts it on every start): typer and the standard library only;
the registry and the generator of feeds.md are imported when a command runs.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

import typer

DOC_PATH = Path(__file__).with_name("feeds.md")

app = typer.Typer(help="The feed registry (include/crm/feeds/registry.yml).", no_args_is_help=True)


@app.callback()
def _feeds() -> None:
    """The feed registry (include/crm/feeds/registry.yml)."""


@app.command("doc")
def doc_cmd(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Write nothing; exit 1 if the file differs from what the registry generates."
        ),
    ] = False,
    path: Annotated[Path, typer.Option(help="The file to write or check.")] = DOC_PATH,
) -> None:
    """Write feeds.md from the registry (or, with --check, verify it is up to date)."""
    from crm.feeds.doc import render
    from crm.feeds.registry import REGISTRY_PATH, load_registry

    text = render(load_registry(REGISTRY_PATH))
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if check:
        if current == text:
            typer.echo(f"{path} is up to date with {REGISTRY_PATH.name}")
            return
        why = "does not exist" if current is None else "differs from what the registry generates"
        typer.echo(f"{path} {why}; run `crm feeds doc` to regenerate it (then commit it).", err=True)
        if current is not None:
            diff = list(
                difflib.unified_diff(
                    current.splitlines(), text.splitlines(), "committed", "generated", n=1, lineterm=""
                )
            )
            more = [f"... ({len(diff) - 40} more diff lines)"] if len(diff) > 40 else []
            typer.echo("\n".join(diff[:40] + more), err=True)
        raise typer.Exit(1)
    if current == text:
        typer.echo(f"{path} unchanged")
        return
    path.write_text(text, encoding="utf-8", newline="\n")
    typer.echo(f"wrote {path}")
