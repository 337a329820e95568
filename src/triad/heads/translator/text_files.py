"""Reading a user's text files line by line, with the line number of every fault.

Standard library only: ``triad predict translator --file`` checks its input with these before the
model (and torch) is loaded, and the prepare step reads the user's parallel text with them.

A line is what lies between two ``\\n`` bytes; a ``\\r`` before it (Windows line ends) is dropped, and so
is a byte-order mark at the start of the file. Each line is decoded as UTF-8 on its own, so an invalid
byte is reported with its line, not as a position in the whole file.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from triad.errors import DataError


@dataclass
class TextLines:
    """A file's lines: ``lines[k - 1]`` is line k, or None where it is not valid UTF-8 (``bad`` says why)."""

    path: Path
    lines: list[str | None]
    bad: list[tuple[int, str]]  # (line number, from 1; what is wrong)

    def __len__(self) -> int:
        return len(self.lines)


def read_text_lines(path: Path) -> TextLines:
    """The lines of ``path``, decoded one by one; an unreadable file raises ``DataError`` naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    chunks = data.split(b"\n")
    if chunks[-1] == b"":  # the newline that ends the last line
        chunks.pop()
    lines: list[str | None] = []
    bad: list[tuple[int, str]] = []
    for number, chunk in enumerate(chunks, 1):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as exc:
            lines.append(None)
            bad.append((number, f"invalid UTF-8: byte 0x{chunk[exc.start]:02x} at byte {exc.start + 1} of the line"))
    return TextLines(path, lines, bad)


def content_length(lines: list[str | None]) -> int:
    """The number of lines up to the last one with text: blank lines at the end of a file are ignored."""
    n = len(lines)
    while n and lines[n - 1] is not None and not lines[n - 1].strip():
        n -= 1
    return n


def check_utf8_file(path: Path, what: str) -> TextLines:
    """``path`` as lines, or a ``DataError`` naming ``what`` (e.g. ``--file``), the file and its bad lines."""
    if not path.is_file():
        raise DataError(f"{what} {path}: no such file")
    text = read_text_lines(path)
    if text.bad:
        shown = "; ".join(f"line {n}: {reason}" for n, reason in text.bad[:5])
        more = f" (and {len(text.bad) - 5} more lines)" if len(text.bad) > 5 else ""
        raise DataError(f"{what} {path} is not UTF-8 text: {shown}{more}. Save it as UTF-8.")
    return text
