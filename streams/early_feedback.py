"""Feedback that names a prediction its learner has not made yet: held until it has.

Why: under at-least-once, a worker killed after publishing predictions and before checkpointing them
makes them again, byte-identical, as its successor re-applies the ticks from the checkpoint. Feedback
on one of them (a trading system answered the first publication) can reach the successor before those
ticks do: the feedback agent has one record to read, the ticks agent a backlog. It was dead-lettered
as ``unknown_prediction`` and never learned, so a kill -9 lost it. A prediction id names its event
time (:func:`streams.issued.made_at`; feedback naming a prediction by symbol and event time gives it
directly), so feedback naming a time later than the symbol's newest prediction is held in the
partition's state (checkpointed with it), and let out once the symbol's predictions reach that time:
learned as soon as the named prediction is made, refused as unknown once a later prediction is made
without it. A backtest applies feedback no earlier than its prediction's tick (agents.backtest), so
it holds some only where a reorder window still holds that tick, and refuses what is left at its end.

Feedback for a symbol that has no learner in the partition is held too where it came keyed as the
symbol's ticks are (the agent compares the key, schemas.keys): the successor of a worker killed before
the partition's first checkpoint (every 5 s or 5,000 vectors) starts over and has no learner for it
until the symbol's first tick. Keyed otherwise, it is refused at once: that is feedback sent to the
wrong partition, and its error message says so. Held without a learner, it is refused once a
prediction of any symbol of the partition is made more than ``grace_ms`` after the time it names and
still no tick of its symbol has come (a misspelt symbol is refused within that much of the partition's
event time, not held for good); it has no clock of its own, so a flood pushes it out first. The
partition's pipeline gives the tick gate's bound on how far one symbol's ticks may run ahead of the
partition's stream (``GateConfig.min_ahead_ms``, 10 minutes by default): the symbols of a partition come
from different feeds, and the symbol's first tick may arrive after another symbol's later ones. Refused
at the first later prediction, as before, feedback on a prediction the successor was a moment from
making again was dead-lettered instead of learned whenever another symbol's tick came first. At most
``limit`` records are held per partition; beyond that the one naming the time furthest ahead of its
symbol's newest prediction is refused (a clock or an id from somewhere else, most likely), so a flood
of such feedback does not push out the feedback a restore is about to meet; without the symbols'
clocks, the one held longest.

>>> early = EarlyFeedback(limit=2)
>>> early.hold("BTCUSDT", 3_000, {"label": 1}, "origin-a")
[]
>>> early.hold("BTCUSDT", 5_000, {"label": 0}, "origin-b")
[]
>>> len(early), early.due("BTCUSDT", 2_000, known=lambda feedback: False)
(2, [])
>>> early.due("BTCUSDT", 4_000, known=lambda feedback: False)  # its time has passed: out, to be refused
[({'label': 1}, 'origin-a')]
>>> early.due("BTCUSDT", 4_000, known=lambda feedback: feedback["label"] == 0)  # its prediction is made
[({'label': 0}, 'origin-b')]
>>> early.hold("ETHUSDT", 9_000, {}, "c"), early.hold("ETHUSDT", 8_000, {}, "d"), early.hold("ETHUSDT", 7_000, {}, "e")
([], [], [({}, 'c')])
>>> early.hold("ETHUSDT", 10**12, {}, "f", clock=lambda symbol: 6_000)  # furthest ahead: refused at once
[({}, 'f')]
>>> orphans = EarlyFeedback()
>>> orphans.hold("BTCUSDX", 5_000, {"label": 1}, "g")  # no learner of that name
[]
>>> orphans.orphaned(6_000, learners={"ETHUSDT"}, grace_ms=2_000)  # another feed may still be behind
[]
>>> orphans.orphaned(8_000, learners={"ETHUSDT"}, grace_ms=2_000)
[({'label': 1}, 'g')]
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from streams.issued import IssuedPredictions, made_at

Held = tuple[dict[str, Any], Any]  # (feedback, origin)


class EarlyFeedback:
    """Feedback held per symbol, each with the event time of the prediction it names and its origin."""

    __slots__ = ("limit", "_held", "_arrivals")

    def __init__(self, limit: int = 1_000):
        if limit < 1:
            raise ValueError("limit must be at least 1 feedback record")
        self.limit = limit
        # symbol -> [(prediction time, arrival number, feedback, origin)], in arrival order
        self._held: dict[str, list[tuple[int, int, dict[str, Any], Any]]] = {}
        self._arrivals = 0

    def __len__(self) -> int:
        return sum(map(len, self._held.values()))

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._held

    def hold(self, symbol: str, made_ms: int, feedback: dict[str, Any], origin: Any,
             clock: Callable[[str], int | None] | None = None) -> list[Held]:
        """Hold ``feedback`` until ``symbol``'s predictions reach ``made_ms``; returns what the limit
        pushed out, to be refused: the record naming the time furthest ahead of its symbol's ``clock``
        (the event time of its newest prediction), the one held longest among equals or without it."""
        self._held.setdefault(symbol, []).append((made_ms, self._arrivals, feedback, origin))
        self._arrivals += 1
        if len(self) <= self.limit:
            return []
        if clock is None:
            symbol_of, out = min(((s, held[0]) for s, held in self._held.items()), key=lambda pair: pair[1][1])
        else:
            # The latest-named of each symbol against its clock (a clock not known yet counts as 0).
            symbol_of, out = max(((s, max(held, key=lambda entry: (entry[0], -entry[1])))
                                  for s, held in self._held.items()),
                                 key=lambda pair: (pair[1][0] - (clock(pair[0]) or 0), -pair[1][1]))
        self._take(symbol_of, [out])
        return [(out[2], out[3])]

    def due(self, symbol: str, event_time_ms: int, known: Callable[[dict[str, Any]], bool]) -> list[Held]:
        """After a prediction of ``symbol`` at ``event_time_ms``: the held feedback whose prediction is
        ``known`` now, or whose time has passed (to be refused), in arrival order."""
        held = self._held.get(symbol)
        if not held:
            return []
        out = [entry for entry in held if entry[0] < event_time_ms or known(entry[2])]
        self._take(symbol, out)
        return [(feedback, origin) for _, _, feedback, origin in out]

    def orphaned(self, event_time_ms: int, learners: Container[str], grace_ms: int = 0) -> list[Held]:
        """After any prediction at ``event_time_ms``: the held feedback of symbols that have no learner
        yet (not in ``learners``) naming a time more than ``grace_ms`` earlier, to be refused: the
        partition went that far past it and no tick of its symbol came (a symbol misspelt, or whose
        ticks go elsewhere)."""
        if grace_ms < 0:
            raise ValueError("grace_ms must be >= 0")
        out = []
        for symbol in [symbol for symbol in self._held if symbol not in learners]:
            entries = [entry for entry in self._held[symbol] if entry[0] + grace_ms < event_time_ms]
            self._take(symbol, entries)
            out += entries
        return [(feedback, origin) for _, _, feedback, origin in sorted(out, key=lambda entry: entry[1])]

    def take_all(self) -> list[Held]:
        """Everything held, in arrival order (the end of a backtest: none of it will be made)."""
        out = sorted((entry for held in self._held.values() for entry in held), key=lambda entry: entry[1])
        self._held.clear()
        return [(feedback, origin) for _, _, feedback, origin in out]

    def _take(self, symbol: str, entries: list) -> None:
        if entries:
            left = [entry for entry in self._held[symbol] if entry not in entries]
            if left:
                self._held[symbol] = left
            else:
                del self._held[symbol]


def named_time(feedback: dict[str, Any]) -> int | None:
    """The event time of the prediction ``feedback`` names: read from its id, or given with the
    symbol (None: an id not of the form a learner gives)."""
    named = feedback.get("prediction_id")
    return made_at(named) if named is not None else feedback.get("event_time_ms")


def named_later(issued: IssuedPredictions, feedback: dict[str, Any]) -> int | None:
    """The event time of the prediction ``feedback`` names, where that is later than the newest of
    ``issued`` (it is still to be made), else None."""
    named = feedback.get("prediction_id")
    if named is not None and named in issued:
        return None
    made = named_time(feedback)
    newest = issued.newest
    clock = made_at(newest) if newest is not None else None
    return made if made is not None and (clock is None or made > clock) else None


def given_up(feedback: dict[str, Any], why: str) -> str:
    """The reason a held record is refused with before its prediction was made."""
    named = feedback.get("prediction_id") or f"at event time {feedback.get('event_time_ms')}"
    return f"no prediction {named} for {feedback.get('symbol')}: held until it was made, given up ({why})"
