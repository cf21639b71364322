"""``crm privacy``: erasure on request, retention per layer, the access audit.

Each command lives in the module that implements it (``erase``, ``retention``, ``access``);
this module only mounts them.
"""

from __future__ import annotations

import typer

from crm.privacy.access import access_log_cmd
from crm.privacy.erase import erase_cmd
from crm.privacy.retention import retain_cmd

HELP = "Customer-data protection: erase a customer, enforce retention, read the access audit."

app = typer.Typer(help=HELP, no_args_is_help=True)


@app.callback()
def _privacy() -> None:
    """Customer-data protection: erase a customer, enforce retention, read the access audit."""


app.command("erase")(erase_cmd)
app.command("retain")(retain_cmd)
app.command("access-log")(access_log_cmd)
