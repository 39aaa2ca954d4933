"""Shared benchmark helpers: the real data in data/ (see data/README.md), timing, the RESULT line."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT / "data"

from cli.kafka_local import delete_topics_containing, free_port  # noqa: E402,F401  (needs ROOT on sys.path)
from cli.processes import Processes, stop_process  # noqa: E402,F401  (Processes: for the benchmarks)
from connectors.recorded import ReplayItem, market_folder  # noqa: E402

KLINE_DUMP = re.compile(r"[A-Za-z0-9_]+-\d+[smhdwM]-\d{4}-\d{2}-\d{2}\.(zip|csv)")
MONTHLY_KLINE_DUMP = re.compile(r"([A-Za-z0-9_]+-\d+[smhdwM])-\d{4}-\d{2}\.(zip|csv)")
# data.binance.vision's folders for the two kinds of dump of one pair.
DUMP_FOLDERS = ("daily", "monthly")


def market_of(path: Path) -> str:
    """Which market a kline dump's pair trades on, to tell a spot BTCUSDT from a futures one: the nearest
    folder on its path named as a market (:func:`connectors.recorded.market_folder`), else the folder it is in, less any
    ``daily`` or ``monthly`` part. So a pair's daily and monthly dumps (data.binance.vision's ``daily/``
    and ``monthly/`` folders, with or without the market folder above them) are one series.

    >>> market_of(Path("data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2023-03-01.zip"))
    'um'
    >>> market_of(Path("downloads/BTCUSDT-1m-2023-03-01.zip"))
    'downloads'
    >>> market_of(Path("dl/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2023-03.zip")) == market_of(
    ...     Path("dl/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2023-03-01.zip"))
    True
    """
    return market_folder(path) or str(Path(*[part for part in path.parent.parts if part not in DUMP_FOLDERS] or ["."]))


@dataclasses.dataclass(frozen=True)
class RealData:
    """The real series a quality benchmark runs on: kline dumps (``SYMBOL-1m-YYYY-MM-DD.zip`` or
    ``.csv``, as data.binance.vision and ``livelearn history`` name them; monthly dumps are read as
    their days, :func:`daily_files`) and websocket captures."""

    klines: tuple[Path, ...]
    captures: tuple[Path, ...]
    # The market of the days split out of a monthly dump (those of other files: :func:`market_of`).
    split_days: dict[Path, str] = dataclasses.field(default_factory=dict)

    def market(self, path: Path) -> str:
        """The market a kline dump's pair trades on: a spot and a futures BTCUSDT are two series."""
        return self.split_days.get(path) or market_of(path)

    def consecutive_days(self) -> list[tuple[str, list[Path]]]:
        """Kline days of one symbol and market that follow each other, joined: the longest real series
        here. A one-day file holds one reference and about 900 events after it; a drift monitor runs for
        weeks, meeting the daily cycle again and again against a reference taken at one time of day, and
        a model learns for weeks. Each run is named for its symbol and its first and last day."""
        by_series: dict[tuple[str, str], list[tuple[date, Path]]] = {}
        for path in self.klines:
            symbol, interval, day = path.stem.split("-", 2)
            if interval != "1m":
                continue
            by_series.setdefault((self.market(path), symbol), []).append((date.fromisoformat(day), path))
        runs = []
        for (_, symbol), days in by_series.items():
            days.sort()
            chain = [days[0]]
            ends: list[tuple[date, Path] | None] = [*days[1:], None]
            for entry in ends:
                if entry is not None and entry[0] - chain[-1][0] == timedelta(days=1):
                    chain.append(entry)
                    continue
                if len(chain) > 1:
                    runs.append((f"{symbol} {chain[0][0]}..{chain[-1][0]}", [p for _, p in chain]))
                if entry is not None:
                    chain = [entry]
        return runs


def real_data(paths: list[str] | None = None) -> RealData:
    """The shipped series (data/: the kline days, the two spot captures and the futures capture's 31
    seconds of four pairs), or every file under the files and folders given (``--data``): a file named
    as a kline dump is klines (a monthly one, its days), one of one pair's one-minute bars under another
    name its days (:func:`minute_bar_days`), any other a capture. So the same benchmark runs on more real
    data than ships here, unchanged."""
    if not paths:
        return RealData(tuple(sorted((SHARED / "binance" / "klines").rglob("*.zip"))),
                        tuple(sorted(p for p in (SHARED / "binance" / "ws").iterdir() if p.is_file())))
    from connectors.recorded import derived_prices, input_files

    files = []
    for path in input_files(paths):
        if derived_prices(path):
            print(f"{path}: {derived_prices(path)}, not its trades: left out", flush=True)
        else:
            files.append(path)
    klines: list[Path] = [path for path in files if KLINE_DUMP.fullmatch(path.name) and holds_ticks(path)]
    given = {(market_of(path), path.name.split(".")[0]) for path in klines}
    folders: dict[str, Path] = {}  # a market -> the folder the days split out of its files are written to

    def folder(market: str) -> Path:
        if market not in folders:
            folders[market] = Path(tempfile.mkdtemp(prefix="livelearn-kline-days-"))
            atexit.register(shutil.rmtree, folders[market], True)
        return folders[market]

    split: dict[Path, str] = {}
    for path in files:
        if not MONTHLY_KLINE_DUMP.fullmatch(path.name):
            continue
        market = market_of(path)
        days = daily_files(path, folder(market))
        kept = [day for day in days if (market, day.name.split(".")[0]) not in given]
        print(f"{path.name}: a monthly kline dump, read as its {len(days)} days"
              + (f" ({len(days) - len(kept)} given as daily dumps too: those are read)" if len(kept) < len(days) else ""),
              flush=True)
        klines += kept
        split.update(dict.fromkeys(kept, market))
    captures: list[Path] = []
    for path in files:
        if KLINE_DUMP.fullmatch(path.name) or MONTHLY_KLINE_DUMP.fullmatch(path.name) or not holds_ticks(path):
            continue
        market = market_of(path)
        bar_days = minute_bar_days(path, folder(market))
        if bar_days is None:
            captures.append(path)
            continue
        print(f"{path.name}: one-minute bars of {bar_days[0].name.split('-')[0]}, read as their {len(bar_days)} days",
              flush=True)
        klines += bar_days
        split.update(dict.fromkeys(bar_days, market))
    # A pair's days in date order, wherever each came from (a monthly dump's or its own file).
    klines.sort(key=lambda path: (path.name.split(".")[0], str(path)))
    return RealData(tuple(klines), tuple(captures), split)


def holds_ticks(path: Path, rows: int = 10_000) -> bool:
    """:func:`connectors.recorded.holds_ticks`; a file with no tick (a log or a note beside the data, an
    empty day) is left out with a line saying so, instead of counting as a series with no vectors."""
    from collections import Counter

    from connectors import recorded

    refusals: Counter[str] = Counter()
    if recorded.holds_ticks(path, rows, refusals=refusals):
        return True
    reason = recorded.no_ticks_reason(path, refusals, rows)
    hint = " (name it for its pair, SYMBOL-..., as Binance does)" if reason == recorded.NO_PAIR else ""
    print(f"{path}: {reason}: left out{hint}", flush=True)
    return False


def daily_files(path: Path, folder: Path) -> list[Path]:
    """A monthly kline dump (``SYMBOL-1m-YYYY-MM.zip`` or ``.csv``, as data.binance.vision publishes
    beside the daily ones) written to ``folder`` as one CSV per UTC day of its rows' open times, named
    as the daily dumps are (``SYMBOL-1m-YYYY-MM-DD.csv``), a header line (USD-M dumps) kept on each: the
    benchmarks' measures are per day (injected changes, consecutive days joined, weekends)."""
    from connectors.binance import to_ms
    from connectors.recorded import _open_text_lines  # the replay's own reader: zip, gzip or plain text

    match = MONTHLY_KLINE_DUMP.fullmatch(path.name)
    if match is None:
        raise ValueError(f"{path}: not a monthly kline dump (SYMBOL-1m-YYYY-MM.zip or .csv)")
    header: list[str] = []
    days: dict[str, list[str]] = {}
    for line in _open_text_lines(path)[0]:
        first = line.split(",", 1)[0].strip()
        if not first.isdigit():
            if line.strip() and not days:
                header = [line]
            continue
        day = datetime.fromtimestamp(to_ms(first) / 1000, UTC).strftime("%Y-%m-%d")
        days.setdefault(day, []).append(line)
    return write_days(folder, match.group(1), header, days)


def write_days(folder: Path, prefix: str, header: list[str], days: dict[str, list[str]]) -> list[Path]:
    """Each day's rows, after ``header``, as ``folder/PREFIX-YYYY-MM-DD.csv`` (how daily dumps are named)."""
    out = []
    for day, rows in sorted(days.items()):
        target = folder / f"{prefix}-{day}.csv"
        target.write_text("\n".join(header + rows) + "\n", encoding="utf-8")
        out.append(target)
    return out


def minute_bar_days(path: Path, folder: Path) -> list[Path] | None:
    """One-minute bars of one pair in a file not named as a Binance dump (a download script's
    ``BTCUSDT_1m_20230301_20230321.csv``, a spreadsheet's export: any format the replay reads) written to
    ``folder`` as one file per UTC day of the bars' times, named as the daily dumps are
    (``SYMBOL-1m-YYYY-MM-DD.csv``), each with the file's header line and its own rows as they were: the
    benchmarks' measures are per day. None when the file is not that (a capture, another interval,
    several pairs)."""
    from connectors import recorded
    from connectors.ohlcv import preamble_lines

    if not _one_pairs_minutes(recorded.first_items(path, 2_000)):
        return None  # told from the first rows: a capture of gigabytes is not read whole for this
    items = recorded.read_file(path)  # one pair's minute bars: a year is 525,600 rows
    if not _one_pairs_minutes(items):
        return None
    head = recorded._first_lines(path, recorded._gzipped(path))
    first = head[preamble_lines(head)]
    header = [] if first.split(",", 1)[0].strip().lstrip("-").isdigit() else [first]
    days: dict[str, list[str]] = {}
    for item in items:
        if item.raw:
            day = datetime.fromtimestamp(item.event_time_ms / 1000, UTC).strftime("%Y-%m-%d")
            days.setdefault(day, []).append(item.raw.decode())
    symbol = next(item.tick["symbol"] for item in items if item.tick is not None)
    return write_days(folder, f"{symbol}-1m", header, days)


def _one_pairs_minutes(items: Iterable[ReplayItem]) -> bool:
    """Whether the ticks among ``items`` are klines of one pair, a minute apart (the median spacing; in
    file order a download may run newest first)."""
    from statistics import median

    ticks = [item.tick for item in items if item.tick is not None]
    if len(ticks) < 2 or any(t["kind"] != "KLINE" for t in ticks) or len({t["symbol"] for t in ticks}) > 1:
        return False
    return median(abs(b["event_time_ms"] - a["event_time_ms"]) for a, b in zip(ticks, ticks[1:], strict=False)) == 60_000


def delete_topics_on_exit(bootstrap: str, run: str) -> None:
    """A benchmark leaves no topics behind: at exit, those named with its run id are deleted."""
    def delete() -> None:
        try:
            delete_topics_containing(bootstrap, run)
        except Exception as exc:
            print(f"bench: could not list topics to delete ({exc})", file=sys.stderr)
    atexit.register(delete)


def tool_env(name: str, requirement: str, executable: str) -> str | None:
    """A benchmark-only tool's executable, from its own virtual environment
    (``~/.cache/livelearn/bench-<name>``), made with pip on first use: the project's environment and
    its lock stay as they are. None, with one line saying why, when it cannot be made."""
    env = Path.home() / ".cache" / "livelearn" / f"bench-{name}"
    path = env / "bin" / executable
    if path.exists():
        return str(path)
    print(f"bench: creating {env} with {requirement} (benchmark-only, once)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", requirement], check=True,
                       timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"bench: {requirement} not available ({exc})", file=sys.stderr)
        shutil.rmtree(env, ignore_errors=True)
        return None
    return str(path) if path.exists() else None


def matched(pattern: str, text: str) -> str:
    """The first group of ``pattern`` in a command's output; a clear error (with the output's end) when
    the command no longer prints it, instead of an AttributeError on None."""
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"bench: expected {pattern!r} in the output, which ends: {text[-1000:]!r}")
    return match.group(1)


def pin_one_core() -> None:
    """Run on one CPU (the issue's 'one core' figures) and keep BLAS/torch single-threaded."""
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by the other tenant of a 2-core box)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def result(name: str, **fields) -> None:
    """One ``RESULT {json}`` line, strict JSON: a figure that could not be computed (an interval on too
    few outcomes is NaN) is ``null``, which every JSON reader takes, not Python's ``NaN``.

    >>> result("demo", ratio=1.5, interval=[float("nan"), 2.0])
    RESULT {"bench": "demo", "interval": [null, 2.0], "ratio": 1.5}
    """
    print("RESULT " + json.dumps(_finite({"bench": name, **fields}), sort_keys=True, allow_nan=False), flush=True)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def wait_ready(port: int, process: subprocess.Popen, path: str = "/readyz", timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("worker exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
                if path != "/readyz" or json.loads(response.read())["ready"]:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("worker not ready")


def isolated_settings(base, name: str):
    """Settings of one benchmark run: its own topics, consumer group, port and state, one partition."""
    run = uuid.uuid4().hex[:8]
    delete_topics_on_exit(base.bootstrap_servers, run)
    state_dir = tempfile.mkdtemp(prefix=f"livelearn-bench-{name}-{run}-")
    atexit.register(shutil.rmtree, state_dir, True)
    return dataclasses.replace(base, topic_prefix=f"bench-{name}-{run}.", app_id=f"bench-{name}-{run}",
                               web_port=str(free_port()), partitions="1", log_level="warning",
                               state_dir=state_dir)


@contextlib.contextmanager
def running_worker(settings):
    """A `livelearn worker` subprocess with these settings, ready on entry, stopped on exit."""
    worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **settings.as_env()},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(settings.worker.web_port, worker)
        yield worker
    finally:
        stop_process(worker)
