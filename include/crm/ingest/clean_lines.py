"""The clean path's Python side: check blocks of whole lines, write them as COPY input.

While PostgreSQL parses one block of a clean CSV file, Python checks the next with one
regular expression (``LineChecker``): the header's field count, ISO date/timestamp shapes
(PostgreSQL's date input would also take an ambiguous ``01/02/2026``), accepted values
and simple patterns. ``numbered`` and ``source_texts`` turn the block into COPY input.
A broken rule raises ``NotClean``: the loader takes the row-by-row path.
"""

from __future__ import annotations

import codecs
import csv
import re

from crm.feeds import Column, Feed
from crm.ingest.rules import ASCII_SAFE, SHAPES


class NotClean(Exception):
    """The file needs the row-by-row path (the message says why)."""


# A registry pattern Python may check instead of PostgreSQL: fully anchored, built only
# from ASCII literals, character classes, \\d, groups and counted repeats. In that subset
# both engines agree on every input (and it cannot match across a delimiter).
_SIMPLE_PATTERN = re.compile(
    r"\^(?:[A-Za-z0-9_-]|\\d|\[[A-Za-z0-9_-]+\]|\{\d+(?:,\d*)?\}|\((?!\?)|[?+*)])*\$"
)


def python_field(col: Column, delimiter: str) -> str | None:
    """The regular expression for ``col``'s field when Python checks it (empty = null),
    or None if its rules stay PostgreSQL CHECK constraints (cheaper there or unsafe here).

    Regular-expression rules cost PostgreSQL about a microsecond a row each; here they
    ride on the pass that already walks every line, on the other core.
    """
    if col.type in SHAPES:
        return f"(?:{SHAPES[col.type]})?"
    if col.type != "text" or (col.pattern and col.accepted):
        return None
    if col.accepted:
        return "(?:" + "|".join(re.escape(v) for v in col.accepted) + ")?"
    if col.pattern and _SIMPLE_PATTERN.fullmatch(col.pattern) and delimiter not in col.pattern:
        return f"(?:{col.pattern[1:-1]})?"
    return None


class LineChecker:
    """Checks blocks of whole lines: the header's field count, ISO dates and timestamps,
    and the pattern and accepted-value rules of text columns (see ``python_field``).

    One regular expression per block walks every line once (possessive, no backtracking).
    ISO shapes matter because PostgreSQL's date input would also take ``01/02/2026``,
    ambiguously. A block with a quote character (a quoted field may hold the delimiter)
    is checked line by line with the csv module, the same rules field by field.
    """

    def __init__(self, feed: Feed, header: list[str], encoding: str, first_line: int) -> None:
        self.encoding = encoding
        self.raw = codecs.lookup(encoding).name in ASCII_SAFE
        d = re.escape(feed.delimiter)
        field = rf"[^{d}\r\n]*+"
        fields = [python_field(feed.column(h), feed.delimiter) for h in header]
        line = d.join(f or field for f in fields)
        pattern = rf"(?:{line}\r?\n)*+"
        self.delimiter, self.quote = feed.delimiter, feed.quotechar
        self.rfc_line = rfc4180_line(feed.delimiter, feed.quotechar)
        self.lines = re.compile(pattern.encode() if self.raw else pattern, re.ASCII)
        self.quote_b = self.quote.encode()
        self.fields = [re.compile(f, re.ASCII) if f else None for f in fields]  # for quoted lines
        self.line = first_line  # the number of the next block's first line

    def check(self, block: bytes) -> None:
        text = block if self.raw else block.decode(self.encoding)
        if (self.quote_b if self.raw else self.quote) in text:
            self._check_quoted(block.decode(self.encoding))
            return
        end = self.lines.match(text).end()
        if end != len(text):
            lineno = self.line + text.count(b"\n" if self.raw else "\n", 0, end)
            raise NotClean(f"line {lineno}: field count or date/timestamp shape")
        self.line += text.count(b"\n" if self.raw else "\n")

    def _check_quoted(self, text: str) -> None:
        lines = text.split("\n")
        lines.pop()  # after the last line end
        reader = csv.reader(
            (x.removesuffix("\r") for x in lines), delimiter=self.delimiter, quotechar=self.quote, strict=True
        )
        try:
            rows = list(reader)
        except csv.Error as err:
            raise NotClean(f"line {self.line + reader.line_num - 1}: {err}") from None
        if len(rows) != len(lines):
            raise NotClean(f"a quoted field spans lines after line {self.line}")
        for i, line in enumerate(lines):
            # A quote inside an unquoted field: the csv module keeps it, PostgreSQL starts
            # a quoted section there. Only the row-by-row path reads such a line (as Python).
            if self.quote in line and not self.rfc_line.fullmatch(line.removesuffix("\r")):
                raise NotClean(f"line {self.line + i}: a quote inside an unquoted field")
        for i, row in enumerate(rows):
            if len(row) != len(self.fields) or any(
                rule is not None and not rule.fullmatch(value)
                for rule, value in zip(self.fields, row, strict=True)
            ):
                raise NotClean(f"line {self.line + i}: field count or date/timestamp shape")
        self.line += len(lines)


def rfc4180_line(delimiter: str, quote: str) -> re.Pattern[str]:
    """One CSV line as RFC 4180 writes it: each field quoted (quotes doubled inside) or free
    of quotes. On such a line Python's csv module and PostgreSQL's COPY read the same fields."""
    d, q = re.escape(delimiter), re.escape(quote)
    field = f"(?:{q}(?:[^{q}]|{q}{q})*+{q}|[^{q}{d}\r\n]*+)"
    return re.compile(f"{field}(?:{d}{field})*+")


def numbered(
    lines: list[bytes], first: int, separator: bytes, sources: list[bytes] | None = None, quote: bytes = b""
) -> bytes:
    """COPY input: each line prefixed with its number (from ``first``) and, given
    ``sources`` (the same lines as ``_source_line`` stores them), its source text between
    ``quote``s, all separated by ``separator``; nothing for no lines (an empty line would be
    a row of nulls)."""
    if not lines:
        return b""
    if sources is None:
        prefix = (b"%d" + separator + b"%s").__mod__
        rows = zip(range(first, first + len(lines)), lines, strict=True)
    else:
        prefix = (b"%d" + separator + quote + b"%s" + quote + separator + b"%s").__mod__
        rows = zip(range(first, first + len(lines)), sources, lines, strict=True)
    return b"\n".join(map(prefix, rows)) + b"\n"


def source_texts(lines: list[bytes], crlf: bool, quote: bytes = b"") -> list[bytes]:
    """The lines as ``_source_line`` stores them: without a carriage return before the line
    end, and with ``quote`` doubled when the field is quoted (CSV)."""
    if crlf:
        lines = [line.removesuffix(b"\r") for line in lines]
    if quote:
        lines = [line.replace(quote, quote + quote) for line in lines]
    return lines
