"""The files a command reads: each file named, and the data files under each folder named.

A folder of market data also holds logs, scripts, notes and metadata tables. Read as data, their rows
were refused: ``evaluate`` stopped on the first, and ``replay`` dead-lettered each one it did not take
for a header (a downloaded tree's ``metadata_range_...csv``: one dead letter a pair it lists). A file
found in a folder with no tick in its first rows is left out with a line on stderr; a file named on its
own is always read, so its refusals are reported as they are.

data.binance.vision's mark-price, index-price and premium-index klines are named as the pair's traded
klines and only their folder tells them apart (:func:`connectors.recorded.derived_prices`): a folder's
are left out with a line, and one named on its own is read only with ``--format`` given.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROWS = 10_000


def data_files(named: list[str], command: str, fmt: str = "auto", symbol: str | None = None) -> list[Path]:
    """The files of ``named`` to read, in path order. Raises CliError (exit 2) for a missing path and
    (exit 1) when no file is left; ValueError for a folder with no data file in it."""
    from cli.errors import CliError
    from connectors.recorded import NO_PAIR, derived_prices, holds_ticks, input_files, no_ticks_reason

    try:
        files = input_files(named)
    except FileNotFoundError as exc:
        raise CliError(str(exc), code=2) from None
    alone = {Path(p) for p in named if not Path(p).is_dir()}
    kept = []
    for path in files:
        derived = derived_prices(path)
        if derived and path in alone and fmt == "auto":
            raise CliError(f"{path}: {derived}, not its trades: not read ({command} it with --format klines "
                           "to read it as the pair's prices)")
        if derived and path not in alone:
            print(f"livelearn: {path}: {derived}, not its trades: left out ({command} it on its own with "
                  "--format klines to read it as the pair's prices)", file=sys.stderr)
            continue
        refusals: Counter[str] = Counter()
        if path in alone or holds_ticks(path, ROWS, fmt=fmt, symbol=symbol, refusals=refusals):
            kept.append(path)
            continue
        reason = no_ticks_reason(path, refusals, ROWS)
        hint = f" ({command} it on its own with --symbol)" if reason == NO_PAIR else ""
        print(f"livelearn: {path}: {reason}: left out{hint}", file=sys.stderr)
    if not kept:
        raise CliError(f"no file with ticks in {', '.join(named)}")
    return kept
