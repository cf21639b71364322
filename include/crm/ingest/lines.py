"""Reading a landing file: the one way the loader opens and reads one.

Only a regular file is opened (not a directory, a named pipe, a device or a symbolic
link: each is refused by rule before a byte is read, so none can hang or crash a load).
Lines come in blocks of about 1 MiB of whole lines, so memory follows the block size,
not the file: a line longer than the feed's ``max_line_bytes`` is cut to that length and
numbered in ``long_lines`` (the loader quarantines it); its rest is read and dropped.
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from crm.ingest.rules import FileRule

BLOCK = 1 << 20  # bytes read (and handed to COPY) at a time


class FileRefused(Exception):
    """A whole-file problem: the file is not loaded and the feed's task fails."""

    def __init__(self, path: Path, rule: str, message: str) -> None:
        self.path, self.rule = path, rule
        super().__init__(f"{path}: {message} (rule {rule}); file refused, nothing loaded")


@dataclass(frozen=True)
class Identity:
    """What changes when a file is rewritten, appended to or replaced."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def identity(path: Path) -> Identity | None:
    """The file's identity now (None if it is gone), without following a symbolic link."""
    try:
        return Identity.of(os.stat(path, follow_symlinks=False))
    except OSError:
        return None


def open_regular(path: Path) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file; FileRefused otherwise.

    ``O_NOFOLLOW`` refuses a symbolic link (it could point out of the landing folder) and
    ``O_NONBLOCK`` keeps a named pipe without a writer from blocking the open; the type is
    checked on the open descriptor, so it cannot change between check and read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileRefused(path, FileRule.FILE_MISSING, "no file delivered for the day") from None
    except OSError as err:
        kind = "a symbolic link" if os.path.islink(path) else f"not readable ({err.strerror})"
        rule = FileRule.NOT_A_REGULAR_FILE if os.path.islink(path) else FileRule.FILE_UNREADABLE
        raise FileRefused(path, rule, f"is {kind}; only regular files are loaded") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = (
            "a directory" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode) else "not a file"
        )
        raise FileRefused(path, FileRule.NOT_A_REGULAR_FILE, f"is {kind}; only regular files are loaded")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_inside(path: Path, root: Path) -> None:
    """FileRefused unless ``path``, with every link resolved, lies inside ``root``."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise FileRefused(path, FileRule.OUTSIDE_LANDING, "resolves to a place outside the landing folder")


@dataclass
class LineReader:
    """The file's bytes in blocks of whole lines (the last line may lack its end).

    A line over ``max_line`` bytes arrives cut to ``max_line`` bytes plus a line end, its
    number in ``long_lines``. ``digest`` (a hashlib object) sees every byte read.
    """

    path: Path
    max_line: int
    skip_bom: bool = False
    digest: Any = None
    long_lines: set[int] = field(default_factory=set)
    size: int = 0  # bytes read
    ends_with_newline: bool = True
    opened: Identity | None = None

    def blocks(self) -> Iterator[bytes]:
        chunk_size = min(BLOCK, self.max_line)
        carry = b""
        skipping = False  # inside the rest of an over-long line
        line = 1  # the number of the first line not yet yielded
        with open_regular(self.path) as fh:
            self.opened = Identity.of(os.fstat(fh.fileno()))
            if self.skip_bom:
                head = fh.read(len(codecs.BOM_UTF8))
                self._count(head)
                carry = b"" if head == codecs.BOM_UTF8 else head
            while chunk := fh.read(chunk_size):
                self._count(chunk)
                if skipping:
                    end = chunk.find(b"\n")
                    if end < 0:
                        continue
                    chunk, skipping = chunk[end + 1 :], False
                if carry:
                    end = chunk.find(b"\n")
                    if len(carry) + (end if end >= 0 else len(chunk)) > self.max_line:
                        yield (carry + chunk)[: self.max_line] + b"\n"
                        self.long_lines.add(line)
                        line, carry = line + 1, b""
                        if end < 0:
                            skipping = True
                            continue
                        chunk = chunk[end + 1 :]
                    elif end < 0:
                        carry += chunk
                        continue
                data = carry + chunk if carry else chunk
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                if cut:
                    line += data.count(b"\n", 0, cut)
                    yield data[:cut]
        if carry:
            yield carry

    def _count(self, chunk: bytes) -> None:
        if self.digest is not None:
            self.digest.update(chunk)
        self.size += len(chunk)
        if chunk:
            self.ends_with_newline = chunk.endswith(b"\n")
