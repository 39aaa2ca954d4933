"""The tick gate: event-time and value hygiene before a tick reaches feature state.

One bad tick must not cost a symbol its later ticks or its models. Without this gate a valid tick
stamped an hour ahead moved the symbol's clock, so every genuine tick after it was dead-lettered as
late (a tick stamped 2099 blocked its symbol until 2099); a price of 1e-300 was applied (``ret_5`` of
1e302) and left both members at exactly 0.5 for good; an exact duplicate was a new tick. The gate
decides per symbol, from what it has accepted so far, and refuses with a reason code that the worker
dead-letters (the input is kept, counted and explained):

* ``future_event``: the event time is ahead of the reference clock by more than the jump bound,
  ``max(min_ahead_ms, gap_factor * typical gap)`` (the typical gap is an exponentially weighted mean of
  the symbol's accepted inter-tick gaps, so one-day klines are not refused for being a day apart); the
  reference is the latest accepted event time of the partition (a quiet symbol in a busy partition
  keeps its place). Also a tick more than ``clock_ahead_ms`` ahead of this machine's clock, when the
  caller passes one (the worker and the backtest pass wall time; history is never ahead of it).
* ``implausible_value``: a price (trade price, kline close, or book mid) whose log change from the
  symbol's last accepted price exceeds ``max(jump_floor, jump_sigmas * sigma)``, sigma being an
  exponentially weighted root mean square of accepted log changes; or a price or size outside any
  market's range (``price_range``, ``max_quantity``), which also keeps the feature engine's arithmetic
  finite. Chebyshev's inequality bounds how often a genuine tick is refused by the sigma term: at
  most ``1 / jump_sigmas**2`` (1 in 2,500 at the default 50) for any return distribution with that
  variance; the floor (10% in one tick) only loosens it.
* ``duplicate_tick``: the same symbol, kind, event time, ids and content as one of the last
  ``duplicate_memory`` accepted ticks.
* ``conflicting_tick``: a tick that one source of the symbol cannot have sent after the ticks accepted
  so far: a kline closing when the last accepted kline closed, with other content, or a tick whose
  exchange sequence id (trade, aggregate trade or book update id) is not above the last accepted one
  of its kind although its event time is not earlier. Two sources under one name do this: a spot and
  a USD-M futures BTCUSDT (Binance names both so) replayed or streamed into one ticks topic were
  otherwise applied as one series, their prices alternating, with every prediction made on it and
  nothing refused. Ids that start again (a producer restarted from 1) are accepted once ``confirm``
  consecutive refused ticks agree (their ids rising). The line of ids they replaced is remembered: a
  restarted producer's old line never goes on, so when it does, two sources interleave; that line
  keeps the name (the source current when the other's ids first went back, not necessarily the first
  seen) and the other's ids are refused from then on (interleaved trades otherwise switched the series
  at every run of ``confirm`` ticks of one source). The other source takes over only once the kept
  one has sent nothing for the jump bound in event time.

A genuine change of level or a genuine gap in the data looks like a bad tick at first. The gate
therefore accepts a new level or a new time line once ``confirm`` consecutive refused ticks agree
with each other (each within the bound of the first): the first ``confirm - 1`` ticks after a real
jump are dead-lettered (replayable from the dead-letter topic), and a single poisoned tick never
moves the symbol. The converse case, an outlier *accepted* because nothing could judge it (a symbol's
first tick in an empty partition, its first gap), is found from the ticks after it: when ``confirm``
consecutive ticks are late against it and agree with each other, :meth:`TickGate.late` says so and the
pipeline starts the symbol again from them. Nothing here depends on wall time unless the caller passes
``now_ms``, so a replay gives the same answer every time.

>>> from streams.ticks import make_tick
>>> gate = TickGate()
>>> t0 = 1_700_000_000_000
>>> def feed(tick):
...     refusal = gate.check(tick)
...     if refusal is None:
...         gate.accept(tick)
...     return refusal
>>> [feed(make_tick("BTCUSDT", "TRADE", t0 + i * 1000, 100.0 + i % 2, 1.0, first_trade_id=i)) for i in range(3)]
[None, None, None]
>>> gate.check(make_tick("BTCUSDT", "TRADE", t0 + 3_600_000, 100.0, 1.0))[0]
'future_event'
>>> gate.check(make_tick("BTCUSDT", "TRADE", t0 + 3000, 1e-300, 1.0))[0]
'implausible_value'
>>> gate.check(make_tick("BTCUSDT", "TRADE", t0 + 2000, 100.0, 1.0, first_trade_id=2))[0]
'duplicate_tick'
>>> feed(make_tick("BTCUSDT", "TRADE", t0 + 3000, 101.0, 1.0, first_trade_id=3)) is None
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

_ID_FIELDS = ("first_trade_id", "last_trade_id", "sequence_id")
_CONTENT_FIELDS = ("price", "quantity", "bid_price", "bid_qty", "ask_price", "ask_qty", "is_buyer_maker")
_PRICE_FIELDS = ("price", "open", "high", "low", "bid_price", "ask_price")
_SIZE_FIELDS = ("quantity", "quote_volume", "taker_buy_volume", "bid_qty", "ask_qty")


@dataclass(frozen=True)
class GateConfig:
    """The gate's bounds (settings ``LIVELEARN_GATE_*``; see the module docstring)."""

    min_ahead_ms: int = 600_000
    gap_factor: float = 20.0
    clock_ahead_ms: int = 300_000
    jump_floor: float = 0.10
    jump_sigmas: float = 50.0
    confirm: int = 3
    duplicate_memory: int = 64
    price_range: tuple[float, float] = (1e-12, 1e12)
    max_quantity: float = 1e15
    enabled: bool = True

    def __post_init__(self):
        if self.min_ahead_ms < 0 or self.clock_ahead_ms < 0:
            raise ValueError("min_ahead_ms and clock_ahead_ms must be >= 0")
        if self.gap_factor <= 0 or self.jump_floor <= 0 or self.jump_sigmas <= 0:
            raise ValueError("gap_factor, jump_floor and jump_sigmas must be positive")
        if self.confirm < 1:
            raise ValueError("confirm must be >= 1")
        if self.duplicate_memory < 0:
            raise ValueError("duplicate_memory must be >= 0")
        low, high = self.price_range
        if not 0 < low < high:
            raise ValueError("price_range must be (low, high) with 0 < low < high")


_GAP_ALPHA = 0.05  # about the last 20 gaps
_VAR_ALPHA = 0.01  # about the last 100 log changes


class SymbolGate:
    """What the gate remembers of one symbol."""

    __slots__ = ("last_time", "gap", "price", "var", "changes", "recent", "recent_set",
                 "jump_run", "time_run", "late_run", "provisional", "sequences", "kline", "id_run",
                 "retired", "rivals")

    def __init__(self):
        self.last_time: int | None = None
        self.gap: float | None = None
        self.price: float | None = None
        self.var: float | None = None
        self.changes = 0
        self.recent: deque[tuple] = deque()
        self.recent_set: set[tuple] = set()
        self.jump_run: list[float] = []  # log prices of consecutive refused jumps
        self.time_run: list[int] = []  # event times of consecutive refused future ticks
        self.late_run: list[int] = []  # event times of consecutive ticks the feature engine found late
        self.provisional = False  # the clock rests on a tick whose time nothing could judge
        self.sequences: dict[str, tuple[int, int]] = {}  # kind -> (last accepted sequence id, its event time)
        self.kline: tuple | None = None  # the fingerprint of the last accepted kline (its event time second)
        self.id_run: list[int] = []  # sequence ids of consecutive ticks refused as conflicting
        self.retired: dict[str, tuple[int, int]] = {}  # kind -> (last id, time) of a line ids restarted from
        self.rivals: dict[str, tuple[int, int]] = {}  # kind -> (last id, time) of a second source's line

    def __setstate__(self, state: Any) -> None:
        SymbolGate.__init__(self)  # fields added since a checkpoint was written keep their defaults
        slots = state[1] if isinstance(state, tuple) else state
        for name, value in (slots or {}).items():
            setattr(self, name, value)


class TickGate:
    """Per-symbol event-time and value hygiene (see the module docstring); part of a partition's state."""

    def __init__(self, config: GateConfig | None = None):
        self.config = config or GateConfig()
        self.symbols: dict[str, SymbolGate] = {}
        self.partition_time: int | None = None
        self.refused: dict[str, int] = {}
        self.rewound = 0  # symbols started again from a later time line (see :meth:`late`)
        # the last tick checked, its fingerprint, whether its time was judged against an accepted one
        self._checked: tuple[dict[str, Any], tuple | None, bool] | None = None
        self._judged = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.rewound = 0  # absent from checkpoints of earlier versions
        self.__dict__.update(state)
        self._checked, self._judged = None, False

    @staticmethod
    def _fingerprint(tick: dict[str, Any]) -> tuple:
        get = tick.get
        ids = (get("first_trade_id"), get("last_trade_id"), get("sequence_id"))
        if ids != (None, None, None):  # exchange ids identify a tick; content only without them
            return (tick["kind"], tick["event_time_ms"], ids)
        return (tick["kind"], tick["event_time_ms"], *(get(f) for f in _CONTENT_FIELDS))

    @staticmethod
    def _price(tick: dict[str, Any]) -> float | None:
        if tick["kind"] == "BOOK_TICKER":
            bid, ask = tick.get("bid_price"), tick.get("ask_price")
            return (bid + ask) / 2.0 if bid and ask else None
        return tick["price"]

    def bound_ms(self, state: SymbolGate) -> float:
        config = self.config
        gap = state.gap if state.gap is not None else 0.0
        return max(config.min_ahead_ms, config.gap_factor * gap)

    def jump_bound(self, state: SymbolGate) -> float:
        config = self.config
        sigma = math.sqrt(state.var) if state.var is not None and state.changes >= 20 else 0.0
        return max(config.jump_floor, config.jump_sigmas * sigma)

    def check(self, tick: dict[str, Any], now_ms: int | None = None) -> tuple[str, str] | None:
        """``None`` when the tick may be applied, else ``(reason code, reason)``. The tick must already
        be valid (streams.ticks.check_tick). A tick that is then applied must be passed to
        :meth:`accept`, so that a tick the feature engine refuses (late) leaves no trace here."""
        config = self.config
        if not config.enabled:
            return None
        symbol = tick["symbol"]
        state = self.symbols.get(symbol)
        if state is None:
            state = self.symbols[symbol] = SymbolGate()
        refusal = self._values(tick) or self._clock(tick, now_ms)
        fingerprint = self._fingerprint(tick) if config.duplicate_memory or tick["kind"] == "KLINE" else None
        self._judged = False
        if refusal is None and fingerprint is not None and fingerprint in state.recent_set:
            refusal = ("duplicate_tick", f"{symbol} {tick['kind']} at {tick['event_time_ms']} repeats one of "
                                         f"the last {config.duplicate_memory} ticks")
        if refusal is None:
            refusal = self._time(state, tick) or self._jump(state, tick) or self._conflict(state, tick, fingerprint)
        self._checked = (tick, fingerprint, self._judged)
        if refusal is None:
            return None
        self.refused[refusal[0]] = self.refused.get(refusal[0], 0) + 1
        return refusal

    def _values(self, tick: dict[str, Any]) -> tuple[str, str] | None:
        low, high = self.config.price_range
        get = tick.get
        for name in _PRICE_FIELDS:
            value = get(name)
            if value and not low <= value <= high:
                return ("implausible_value", f"{name} {value!r} is outside any market's range [{low:g}, {high:g}]")
        limit = self.config.max_quantity
        for name in _SIZE_FIELDS:
            value = get(name)
            if value is not None and value > limit:
                return ("implausible_value", f"{name} {value!r} is above any market's size ({limit:g})")
        return None

    def _clock(self, tick: dict[str, Any], now_ms: int | None) -> tuple[str, str] | None:
        if now_ms is not None and tick["event_time_ms"] - now_ms > self.config.clock_ahead_ms:
            ahead = (tick["event_time_ms"] - now_ms) / 1000.0
            return ("future_event", f"{tick['symbol']} tick at {tick['event_time_ms']} is {ahead:.0f} s ahead of "
                                    f"this machine's clock (bound {self.config.clock_ahead_ms / 1000:.0f} s)")
        return None

    def _confirmed(self, run: list, value: float, agrees: bool) -> bool:
        """One more refused tick in a symbol's run of consecutive ones: True (and the run ends) once
        ``confirm`` of them agree with each other; one that does not agree starts the run again."""
        if not agrees:
            run.clear()
        run.append(value)
        if len(run) >= self.config.confirm:
            run.clear()
            return True
        return False

    def _conflict(self, state: SymbolGate, tick: dict[str, Any], fingerprint: tuple | None) -> tuple[str, str] | None:
        kind, time_ms = tick["kind"], tick["event_time_ms"]
        if kind == "KLINE":
            last = state.kline
            if last is not None and last[1] == time_ms and last != fingerprint:
                return ("conflicting_tick", f"{tick['symbol']} has another kline closing at {time_ms} (this one "
                                            f"closes at {tick['price']!r}): two sources under one name, such as a "
                                            "spot and a futures feed of one symbol? Give each its own symbol "
                                            "(replay --symbol) or its own topic")
            return None
        sequence, last_seen = tick.get("sequence_id"), state.sequences.get(kind)
        if sequence is None or last_seen is None or time_ms < last_seen[1] or (
                sequence > last_seen[0] and not state.retired and not state.rivals):
            state.id_run.clear()
            return None
        retired, rival = state.retired.get(kind), state.rivals.get(kind)
        if retired is not None and last_seen[0] >= retired[0]:
            retired = state.retired.pop(kind)  # the new line has reached the old one's ids
        # The line a tick goes on with: the one whose last id is the highest below its id.
        lines = [(line[0], name) for name, line in (("rival", rival), ("retired", retired), ("", last_seen))
                 if line is not None and line[0] < sequence]
        line = max(lines)[1] if lines else None
        if line == "rival" and time_ms - last_seen[1] <= self.bound_ms(state):
            previous, state.rivals[kind] = state.rivals[kind], (sequence, time_ms)
            return ("conflicting_tick", f"{tick['symbol']} {kind} id {sequence} at {time_ms} goes on with a second "
                                        f"source's ids (up to {previous[0]}), not with the accepted ones (up to "
                                        f"{last_seen[0]}): two sources under one name, such as a spot and a futures "
                                        "feed of one symbol? Give each its own symbol or its own topic")
        if line is not None:
            if line == "retired":  # a restarted producer's old line never goes on: two sources
                state.rivals[kind] = last_seen
                del state.retired[kind]
            elif line == "rival":  # the accepted source has been silent for the jump bound
                del state.rivals[kind]
            state.id_run.clear()
            return None
        run = state.id_run
        if self._confirmed(run, sequence, not run or sequence > run[-1]):
            state.retired[kind] = last_seen
            return None  # the ids start again
        return ("conflicting_tick", f"{tick['symbol']} {kind} id {sequence} at {time_ms} is not above the last "
                                    f"accepted one ({last_seen[0]} at {last_seen[1]}): two sources under one name, "
                                    "such as a spot and a futures feed of one symbol? Give each its own symbol "
                                    f"or its own topic (ids that start again are accepted once "
                                    f"{self.config.confirm} consecutive ticks agree)")

    def _time(self, state: SymbolGate, tick: dict[str, Any]) -> tuple[str, str] | None:
        if state.last_time is not None and state.gap is None:
            return None  # the symbol's first gap: nothing to judge it by yet
        known = [t for t in (state.last_time, self.partition_time) if t is not None]
        if not known:
            return None
        reference = max(known)
        time_ms = tick["event_time_ms"]
        bound = self.bound_ms(state)
        self._judged = True
        if time_ms - reference <= bound:
            state.time_run.clear()
            return None
        run = state.time_run
        if self._confirmed(run, time_ms, not run or 0 <= time_ms - run[-1] <= bound):
            return None  # a new time line
        return ("future_event", f"{tick['symbol']} tick at {time_ms} is {(time_ms - reference) / 1000:.0f} s ahead of "
                                f"the stream ({reference}); bound {bound / 1000:.0f} s, accepted once "
                                f"{self.config.confirm} consecutive ticks agree")

    def _jump(self, state: SymbolGate, tick: dict[str, Any]) -> tuple[str, str] | None:
        price = self._price(tick)
        if price is None or state.price is None:
            return None
        change = math.log(price / state.price)
        bound = self.jump_bound(state)
        if abs(change) <= bound:
            state.jump_run.clear()
            return None
        run, level = state.jump_run, math.log(price)
        if self._confirmed(run, level, not run or abs(level - run[0]) <= bound):
            return None  # a new price level
        return ("implausible_value", f"{tick['symbol']} price {price!r} is a log change of {change:+.3g} from the last "
                                     f"accepted {state.price!r}; bound {bound:.3g}, accepted once "
                                     f"{self.config.confirm} consecutive ticks agree")

    def accept(self, tick: dict[str, Any]) -> None:
        """Take an applied tick into the symbol's state (its clock, price level, volatility, recent ticks)."""
        if not self.config.enabled:
            return
        state = self.symbols[tick["symbol"]]
        time_ms = tick["event_time_ms"]
        if state.last_time is not None and time_ms > state.last_time:
            gap = time_ms - state.last_time
            state.gap = gap if state.gap is None else state.gap + _GAP_ALPHA * (gap - state.gap)
        if state.last_time is None or time_ms > state.last_time:
            state.last_time = time_ms
        if self.partition_time is None or time_ms > self.partition_time:
            self.partition_time = time_ms
        price = self._price(tick)
        if price is not None:
            if state.price is not None:
                change = math.log(price / state.price)
                square = change * change
                state.var = square if state.var is None else state.var + _VAR_ALPHA * (square - state.var)
                state.changes += 1
            state.price = price
        checked = self._checked if self._checked is not None and self._checked[0] is tick else None
        self._checked = None
        state.provisional = checked is not None and not checked[2]
        state.late_run.clear()
        kind, memory = tick["kind"], self.config.duplicate_memory
        fingerprint = checked[1] if checked is not None and checked[1] is not None else (
            self._fingerprint(tick) if memory or kind == "KLINE" else None)
        if kind == "KLINE":
            if state.kline is None or time_ms >= state.kline[1]:
                state.kline = fingerprint
        elif (sequence := tick.get("sequence_id")) is not None:
            last_seen = state.sequences.get(kind)
            if last_seen is None or time_ms >= last_seen[1]:
                state.sequences[kind] = (sequence, time_ms)
        if memory and fingerprint is not None:  # never None with a memory
            if fingerprint not in state.recent_set:
                state.recent.append(fingerprint)
                state.recent_set.add(fingerprint)
                if len(state.recent) > memory:
                    state.recent_set.discard(state.recent.popleft())

    def late(self, tick: dict[str, Any]) -> bool:
        """The feature engine refused ``tick`` as late (older than the symbol's clock). True when that
        clock rests on a tick whose time nothing could judge (a symbol's first tick in an empty
        partition, its first gap) and ``confirm`` consecutive late ticks agree with each other: that
        tick was the outlier, so the caller starts the symbol again (:meth:`forget`) and applies this
        tick. Without it a second tick stamped a month ahead dead-lettered every genuine tick of the
        month as late; now ``confirm - 1`` of them are, as after a genuine gap."""
        if not self.config.enabled:
            return False
        state = self.symbols.get(tick["symbol"])
        if state is None or not state.provisional:
            return False
        run, time_ms, bound = state.late_run, tick["event_time_ms"], self.bound_ms(state)
        if self._confirmed(run, time_ms, not run or 0 <= time_ms - run[-1] <= bound):
            self.rewound += 1
            return True
        return False

    def forget(self, symbol: str) -> None:
        """Drop what the gate remembers of ``symbol``; the partition's clock is then the latest accepted
        time of the symbols left."""
        self.symbols.pop(symbol, None)
        self._checked = None
        times = [state.last_time for state in self.symbols.values() if state.last_time is not None]
        self.partition_time = max(times) if times else None
