"""The first pass over a landing file: what the load needs to know before it starts.

One streaming read (bounded memory, blocks of whole lines at C speed) gives the file's
SHA-256, its encoding (the feed's, or a tolerated one that decodes the whole file), a
byte-order mark, Windows line ends, and the lines that cannot be staged as they are
(undecodable, holding a NUL byte, longer than the feed allows). A file that is empty,
cut during delivery or mostly not text in its encoding is refused here (FileRefused).
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from crm.feeds import Feed
from crm.ingest.lines import FileRefused, Identity, LineReader, open_regular
from crm.ingest.rules import ASCII_COMPATIBLE, FileRule

BAD_LINE_SHARE = 0.01  # above this share of undecodable lines the file's encoding is wrong


@dataclass
class FileFacts:
    sha256: str
    encoding: str
    bom: bool
    crlf: bool
    data_lines: int
    bad_lines: set[int]  # undecodable in the file's encoding
    nul_lines: set[int] = field(default_factory=set)  # hold a NUL byte (PostgreSQL text cannot)
    long_lines: set[int] = field(default_factory=set)  # longer than the feed's max_line_bytes
    identity: Identity | None = None  # the file as scanned: a load checks it did not change

    @property
    def odd_lines(self) -> set[int]:
        """Lines that cannot be staged as they are (quarantined before any rule)."""
        return self.bad_lines | self.nul_lines | self.long_lines

    def warnings(self, feed: Feed) -> list[str]:
        """What the load tolerates in the file, as the load's warnings."""
        warnings = []
        if self.bom:
            warnings.append("BOM_STRIPPED: UTF-8 byte-order mark removed")
        if self.crlf:
            warnings.append("CRLF: Windows line ends normalised")
        if self.encoding != feed.encoding:
            warnings.append(f"ENCODING_CONVERTED: decoded as {self.encoding} (tolerated by the feed)")
        return warnings


def scan_file(feed: Feed, path: Path) -> FileFacts:
    """First pass: checksum, encoding, line ends, truncation (streaming, bounded memory).

    Works on blocks of whole lines at C speed; only a block that does not decode is
    looked at line by line, to number its undecodable lines.
    """
    reader = LineReader(path, max_line=feed.max_line_bytes, digest=hashlib.sha256())
    lines = 0
    bad: set[int] = set()
    nul: set[int] = set()
    declared_text = False  # a non-ASCII line is valid in the declared encoding
    crlf = False
    bom = False
    ascii_ok = codecs.lookup(feed.encoding).name in ASCII_COMPATIBLE
    for block in reader.blocks():  # every line, over-long ones cut
        if lines == 0 and block.startswith(codecs.BOM_UTF8):
            bom = True
            block = block[len(codecs.BOM_UTF8) :]
            if not block:  # the file is only a byte-order mark
                continue
        # A single-byte search first: memchr is several times faster than a two-byte one.
        crlf = crlf or (b"\r" in block and b"\r\n" in block)
        # Pure ASCII is valid in an ASCII-compatible encoding, and isascii() is far cheaper
        # than decoding.
        if not (ascii_ok and block.isascii()):
            try:
                block.decode(feed.encoding)
                declared_text = True
            except UnicodeDecodeError:
                for i, line in enumerate(block.split(b"\n"), start=lines + 1):
                    if i in reader.long_lines:  # cut anywhere, maybe inside a character
                        continue
                    try:
                        line.decode(feed.encoding)
                        declared_text = declared_text or not line.isascii()
                    except UnicodeDecodeError:
                        bad.add(i)
        if b"\x00" in block:
            nul.update(i for i, line in enumerate(block.split(b"\n"), start=lines + 1) if b"\x00" in line)
        lines += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    size, sha256 = reader.size, reader.digest.hexdigest()
    if reader.opened is not None and reader.opened.size != size:
        raise FileRefused(path, FileRule.FILE_CHANGED, "the file changed while it was read")
    if size == 0 and feed.format == "csv":
        raise FileRefused(path, "FILE_EMPTY", "file has no bytes (a day with no rows still has a header)")
    if size == 0:  # JSON Lines: no events that day
        return FileFacts(sha256, feed.encoding, False, False, 0, set(), identity=reader.opened)
    if len(nul) > max(1, BAD_LINE_SHARE * lines):
        raise FileRefused(
            path,
            "ENCODING",
            f"{len(nul)} of {lines} lines hold NUL bytes (first: line {min(nul)}): "
            f"not {feed.encoding} text (UTF-16?)",
        )
    if not reader.ends_with_newline:
        raise FileRefused(
            path, "FILE_TRUNCATED", f"line {lines} has no line end: the file was cut during delivery"
        )
    encoding = feed.encoding
    # A tolerated encoding converts a file written in it, not a mixed one: decoding the
    # valid non-ASCII lines of a mostly declared-encoding file as GBK would silently turn
    # them into other characters. In a mixed file the odd lines are undecodable.
    tolerated = () if declared_text else feed.tolerated_encodings
    if bad:
        for candidate in tolerated:
            if _decodes(path, candidate, bom):
                encoding, bad = candidate, set()
                break
        else:
            if len(bad) > max(1, BAD_LINE_SHARE * lines):
                first = min(bad)
                why = (
                    "while other non-ASCII lines are: a file of mixed encodings is not converted"
                    if declared_text
                    else f"and no tolerated encoding ({', '.join(tolerated) or 'none'}) decodes it"
                )
                raise FileRefused(
                    path,
                    "ENCODING",
                    f"{len(bad)} of {lines} lines are not valid {feed.encoding} (first: line {first}) {why}",
                )
    data_lines = lines - (1 if feed.format == "csv" and feed.header else 0)
    return FileFacts(sha256, encoding, bom, crlf, data_lines, bad, nul, reader.long_lines, reader.opened)


def _decodes(path: Path, encoding: str, bom: bool) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    with open_regular(path) as fh:
        if bom:
            fh.read(len(codecs.BOM_UTF8))
        try:
            for block in iter(lambda: fh.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True
