"""Headless Chromium for the report: its DOM after the scripts ran, and a PNG of the page.

``make chromium`` unpacks Debian's Chromium and the libraries it lacks into
.venv/chromium/root (no root); that binary runs with LD_LIBRARY_PATH on the unpacked
libraries. Standard library only; nothing is fetched (the flags keep Chromium off the network).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

UNPACKED = Path("chromium/root/usr/lib/chromium/chromium")  # under .venv, by `make chromium`
TIMEOUT_SECONDS = 60
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",  # let the page's scripts (plotly) finish first
]
_HEIGHT = re.compile(r'data-crm-height="(\d+)"')
_MEASURE = (  # last in the body: runs after every figure's script
    "<script>document.body.setAttribute('data-crm-height', document.documentElement.scrollHeight)</script>"
)


class BrowserError(RuntimeError):
    """Chromium is missing, failed or did not finish in time."""


def find_chromium() -> Path | None:
    """$CRM_CHROMIUM, else the unpacked one in .venv (the repo's or this interpreter's), else
    ``chromium`` on PATH; None when there is none."""
    if env := os.environ.get("CRM_CHROMIUM"):
        return Path(env)
    for venv in (Path(__file__).resolve().parents[3] / ".venv", Path(sys.prefix)):
        if (venv / UNPACKED).is_file():
            return venv / UNPACKED
    found = shutil.which("chromium")
    return Path(found) if found else None


def _run(html: Path, *args: str) -> str:
    """Run Chromium on ``html`` with a fresh profile; its stdout."""
    binary = find_chromium()
    if binary is None:
        raise BrowserError("no Chromium: run `make chromium` (or set CRM_CHROMIUM)")
    env = dict(os.environ)
    root = binary.parents[3] if len(binary.parents) > 3 else Path("/")
    if binary.parts[-4:] == ("usr", "lib", "chromium", "chromium") and root != Path("/"):  # unpacked
        libs = [str(d) for lib in root.glob("usr/lib/*-linux-gnu") for d in (lib, lib / "pulseaudio")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryDirectory(prefix="crm-chromium-") as profile:
        cmd = [str(binary), *FLAGS, f"--user-data-dir={profile}", *args, html.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"Chromium did not finish {html.name} in {TIMEOUT_SECONDS} s") from None
        except OSError as err:
            raise BrowserError(f"Chromium could not start ({binary}): {err}") from None
    if done.returncode != 0:
        said = [ln for ln in done.stderr.splitlines() if "dbus" not in ln.lower()][-5:]
        raise BrowserError(f"Chromium failed on {html.name} (exit {done.returncode}): " + " | ".join(said))
    return done.stdout


def dump_dom(html: Path) -> str:
    """The page's DOM, serialised after its scripts ran (what the reader's browser shows)."""
    return _run(html, "--dump-dom")


def page_height(html: Path, width: int = 1200) -> int:
    """The page's full height in pixels at ``width``, measured on a copy of it."""
    with tempfile.TemporaryDirectory(prefix="crm-measure-") as tmp:
        copy = Path(tmp) / html.name
        head, _, tail = html.read_text(encoding="utf-8").rpartition("</body>")
        copy.write_text(f"{head}{_MEASURE}</body>{tail}" if head else tail + _MEASURE, encoding="utf-8")
        found = _HEIGHT.search(_run(copy, "--dump-dom", f"--window-size={width},1000"))
    if not found:
        raise BrowserError(f"could not measure the height of {html.name}")
    return int(found.group(1))


def render_png(html: Path, png: Path, width: int = 1200, height: int | None = None) -> Path:
    """Screenshot of the page as Chromium draws it (``height`` None: the full page)."""
    height = height or page_height(html, width)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    _run(html, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    if not png.is_file() or png.stat().st_size == 0:
        raise BrowserError(f"Chromium wrote no screenshot of {html.name}")
    return png
