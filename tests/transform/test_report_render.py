"""`crm report --png`: the day's page opens in headless Chromium with every plot drawn.

Chromium comes from `make chromium` (Debian's packages unpacked into .venv/chromium); the
test is skipped only when there is none. The DOM after plotly.js ran must hold an SVG with a
drawn trace for every figure the page has, and the screenshot must not be a blank page.
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crm.cli import app
from crm.reporting.browser import dump_dom, find_chromium

from .bank import DAYS, START

DAY = START + dt.timedelta(days=DAYS - 2)  # the last day the template built (as test_report)

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="no Chromium: `make chromium` installs it (needs apt-get and dpkg)"
)


class _Figures(HTMLParser):
    """Per plotly figure div of a DOM dump: has it a main SVG, how many traces and drawn marks."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, int]] = []
        self._depth = 0  # open divs inside the current figure div (0: outside one)
        self._g: list[set[str]] = []  # classes of the open <g> elements

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag == "div" and self._depth:
            self._depth += 1
        elif tag == "div" and "plotly-graph-div" in classes:
            self._depth = 1
            self.figures.append({"main_svg": 0, "traces": 0, "marks": 0})
        if not self._depth:
            return
        fig = self.figures[-1]
        in_trace = any({"trace", "hm"} & g for g in self._g)
        if tag == "svg" and "main-svg" in classes:
            fig["main_svg"] += 1
        elif tag == "g":
            fig["traces"] += bool({"trace", "hm"} & classes)
            self._g.append(classes)
        elif tag == "path" and in_trace and (a.get("d") or "M0,0Z") not in ("M0,0Z", "M0,0"):
            fig["marks"] += 1  # a bar, box, line or slice with a shape
        elif tag == "image" and in_trace and (a.get("xlink:href") or a.get("href") or "").startswith("data:"):
            fig["marks"] += 1  # a heatmap's raster

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "g" and self._g:
            self._g.pop()
        elif tag == "div" and self._depth:
            self._depth -= 1


def _pixels(png: Path) -> np.ndarray:
    """The PNG's pixels (height, width, channels): 8-bit RGB(A), not interlaced, as Chromium writes."""
    blob = png.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    while pos < len(blob):
        n, kind = struct.unpack(">I4s", blob[pos : pos + 8])
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(
                ">IIBBBBB", blob[pos + 8 : pos + 21]
            )
        elif kind == b"IDAT":
            idat.append(blob[pos + 8 : pos + 8 + n])
        pos += 12 + n
    assert (depth, interlace) == (8, 0) and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, width * bpp + 1)
    return _unfilter(raw, bpp).reshape(height, width, bpp)


def _unfilter(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth); numba, or it takes a minute."""
    from numba import njit  # shap's dependency; Pillow is not installed

    @njit(cache=False)
    def run(raw, bpp):
        h, stride = raw.shape[0], raw.shape[1] - 1
        out = np.zeros((h, stride), np.uint8)
        for y in range(h):
            f = raw[y, 0]
            for i in range(stride):
                a = np.int32(out[y, i - bpp]) if i >= bpp else np.int32(0)
                b = np.int32(out[y - 1, i]) if y else np.int32(0)
                c = np.int32(out[y - 1, i - bpp]) if y and i >= bpp else np.int32(0)
                if f == 0:
                    p = np.int32(0)
                elif f == 1:
                    p = a
                elif f == 2:
                    p = b
                elif f == 3:
                    p = (a + b) // 2
                else:
                    q = a + b - c
                    pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                out[y, i] = (np.int32(raw[y, i + 1]) + p) & 255
        return out

    return run(raw, bpp)


def test_every_plot_of_the_report_is_drawn_in_chromium(warehouse, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--date", DAY.isoformat(), "--out", str(out), "--png"])
    assert result.exit_code == 0, result.output
    png = out.with_suffix(".png")
    assert f"wrote {png}" in result.output
    html = out.read_text(encoding="utf-8")
    expected = html.count("Plotly.newPlot(")
    assert expected >= 6

    figures = _Figures()
    figures.feed(dump_dom(out))
    assert len(figures.figures) == expected
    undrawn = [i for i, f in enumerate(figures.figures) if not (f["main_svg"] and f["traces"] and f["marks"])]
    assert not undrawn, f"figures not drawn (page order): {undrawn}: {[figures.figures[i] for i in undrawn]}"

    pixels = _pixels(png)
    assert pixels.shape[1] == 1200 and pixels.shape[0] >= 450 * expected  # full page: every figure
    ink = (pixels[:, :, :3] < 245).any(axis=2).mean()  # background is white; plot areas are not
    assert ink > 0.08, f"only {ink:.1%} of the screenshot is not background"
