"""A progress or status line that stays readable where the stream is not a terminal.

Why: a line redrawn with carriage returns is one line that never ends once it goes to a file, a pipe
or a container's log. ``livelearn live`` under Docker or systemd redrew its status every second onto
the same line: a log line growing by about 100 bytes a second, days long, that no log reader shows
until the process ends. On a terminal the line is redrawn in place as before (every ``every_s``);
anywhere else it is written as a whole line, at most every ``log_every_s``, and the last one always.

>>> import io
>>> times = iter([0.0, 1.0, 31.0, 32.0])
>>> log = io.StringIO()
>>> line = StatusLine(log, every_s=0.5, log_every_s=30.0, clock=lambda: next(times))
>>> for n in (10, 20, 30):  # at 0 s (the clock starts), 1 s, 31 s
...     if line.due():
...         line.write(f"{n} rows")
>>> line.close("40 rows")
>>> log.getvalue()
'30 rows\\n40 rows\\n'

On a terminal the line is redrawn (padded over a longer one before it) and ended by :meth:`close`:

>>> tty = io.StringIO()
>>> line = StatusLine(tty, every_s=0.0, terminal=True)
>>> line.write("1,000 rows"); line.write("1 row"); line.close()
>>> tty.getvalue()
'\\r1,000 rows\\r1 row     \\n'

A log record written while a line is drawn would be appended to it; :class:`LogHandler` ends the
line first, and the next redraw starts a new one:

>>> import logging
>>> tty = io.StringIO()
>>> logger = logging.getLogger("livelearn.doctest")
>>> logger.addHandler(LogHandler(tty)); logger.propagate = False
>>> line = StatusLine(tty, every_s=0.0, terminal=True)
>>> line.write("1,000 rows"); logger.warning("broker slow"); line.write("2,000 rows"); line.close()
>>> tty.getvalue()
'\\r1,000 rows\\nbroker slow\\n\\r2,000 rows\\n'
"""

from __future__ import annotations

import logging
import sys
import time
import weakref
from collections.abc import Callable
from typing import TextIO

# The lines drawn on a terminal and not ended: what a log record must end before it is written.
_drawn: weakref.WeakSet[StatusLine] = weakref.WeakSet()


class StatusLine:
    """Ask :meth:`due` as often as convenient, :meth:`write` when it says so; how a line is written
    depends on the stream."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 0.5, log_every_s: float = 30.0,
                 enabled: bool = True, terminal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if every_s < 0 or log_every_s < 0:
            raise ValueError("every_s and log_every_s must be >= 0 seconds")
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        if terminal is None:
            isatty = getattr(self.stream, "isatty", None)
            terminal = bool(isatty and isatty())
        self._terminal = terminal
        self._interval = every_s if terminal else log_every_s
        self._clock = clock
        self._last: float | None = None  # when the last line was written (None: none yet)
        self._width = 0  # the length of the line on the terminal, to pad a shorter one over it

    def due(self, force: bool = False) -> bool:
        """Whether a line is to be written now (``force``: yes, when enabled); a caller whose text costs
        something to build asks this first, then :meth:`write`. Off a terminal the first call only
        starts the clock, so a run shorter than the interval writes its last line alone."""
        if not self.enabled:
            return False
        now = self._clock()
        if force:
            pass
        elif self._last is None and not self._terminal:
            self._last = now
            return False
        elif self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        return True

    def write(self, text: str) -> None:
        """Write ``text`` now: redrawn over the line on a terminal, a whole line elsewhere."""
        if self._terminal:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            _drawn.add(self)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, text: str | None = None) -> None:
        """The last line (``text``, when given, is written whatever the interval), ended on a terminal."""
        if not self.enabled:
            return
        if text is not None:
            self.write(text)
        self.end()

    def end(self) -> None:
        """End the line drawn on a terminal, if any (the next :meth:`write` starts a new one)."""
        if self._terminal and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
        _drawn.discard(self)


class LogHandler(logging.StreamHandler):
    """Log records as Python's last-resort handler writes them (the message alone, WARNING and above),
    each after ending any status line drawn on a terminal (:func:`log_beside_status_lines`)."""

    def __init__(self, stream: TextIO | None = None, level: int = logging.WARNING):
        super().__init__(sys.stderr if stream is None else stream)
        self.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        for line in list(_drawn):
            line.end()
        super().emit(record)


def log_beside_status_lines(stream: TextIO | None = None) -> None:
    """Route the process's log records through :class:`LogHandler`, unless logging is configured
    already (a command-line tool calls this once; a worker configures its own logging)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(LogHandler(stream))
