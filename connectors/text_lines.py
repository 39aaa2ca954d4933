"""The lines of a gzip capture, read in chunks instead of whole.

A day of one symbol's websocket capture is millions of lines (several GB once decompressed); reading
it whole, as a text and then a list of lines, does not fit in memory. :class:`GzipLines` gives the same
lines as ``data.decode("utf-8-sig", errors="replace").splitlines()`` of every gzip member decompressed
(what :func:`gzip.decompress` reads), holding one chunk at a time. A capture whose recorder was killed
ends inside a member: its complete lines are given, the incomplete last one is not, and
:attr:`GzipLines.truncated` says so once the lines are read.

>>> import gzip, tempfile, pathlib
>>> folder = tempfile.TemporaryDirectory()
>>> path = pathlib.Path(folder.name) / "c.gz"
>>> _ = path.write_bytes(gzip.compress(b"one\\r\\ntwo\\n") + gzip.compress(b"three")[:-6])
>>> lines = GzipLines(path)
>>> list(lines), lines.truncated, lines.count
(['one', 'two'], True, 2)
>>> folder.cleanup()
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterator
from pathlib import Path

# Compressed bytes read at a time: text captures inflate about 5-20x, so a chunk holds a few MB at most.
CHUNK = 1 << 16


class DamagedFile(ValueError):
    """A zip or gzip file that cannot be read (a download or a capture cut short, or not that format)."""


class GzipLines:
    """Every line of a gzip file (all members), read a chunk at a time; ``truncated`` and ``count``
    (lines given) describe the last complete read."""

    def __init__(self, path: Path, chunk: int = CHUNK):
        if chunk < 1:
            raise ValueError("chunk must be >= 1 byte")
        self.path = Path(path)
        self.chunk = chunk
        self.truncated = False
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        self.truncated, self.count = False, 0
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        pending = ""
        for data in self._members():
            pending += decoder.decode(data)
            if "\n" not in pending:
                continue
            *complete, pending = pending.split("\n")
            for physical in complete:
                # str.splitlines also breaks at \r, form feeds and other separators: the same lines as the
                # whole text's, since "\n" ends every physical line here.
                for line in (physical + "\n").splitlines():
                    self.count += 1
                    yield line
        if self.truncated:
            return  # what follows the last newline is a line cut short
        for line in (pending + decoder.decode(b"", final=True)).splitlines():
            self.count += 1
            yield line

    def _members(self) -> Iterator[bytes]:
        """Decompressed bytes of every member in turn; sets ``truncated`` when the file ends inside one."""
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        between = False  # after a member's end: gzip pads with zeros, which are not a member
        produced = 0
        with self.path.open("rb") as handle:
            while data := handle.read(self.chunk):
                while data:
                    if between:
                        data = data.lstrip(b"\x00")
                        if not data:
                            break
                        inflater, between = zlib.decompressobj(16 + zlib.MAX_WBITS), False
                    try:
                        out = inflater.decompress(data)
                    except zlib.error as exc:
                        raise DamagedFile(f"{self.path}: damaged gzip data after {produced:,} bytes ({exc})") from None
                    produced += len(out)
                    if out:
                        yield out
                    if inflater.eof:
                        data, between = inflater.unused_data, True
                    else:
                        data = b""
        self.truncated = not between  # the file ended inside a member
