"""Evaluation of published predictions against their outcomes: the skill table.

Input: pairs of a prediction (its ensemble probability and every member's and reference's, as
published in ``member_probabilities``) and its outcome (up, down, or flat). Output, per symbol and
pooled over symbols: outcomes, flat share, and for the ensemble, each member and each reference
(constant 0.5, running prior, persistence, last trade side, and the queue-imbalance-only logistic
regression where book data exist): accuracy, log-loss, Brier score, expected calibration error, and
log-loss skill against the running prior and against the constant 0.5 with 95% intervals that respect
overlapping horizons (:mod:`streams.scoring`; blocks of at least four times the typical number of
predictions between a prediction and its outcome). Flat outcomes are counted, not scored.

The queue-imbalance reference (:class:`streams.references.QueueImbalanceReference`) learns each
outcome when it matures, like the models.

>>> table = Evaluation(block=2)
>>> for i in range(40):
...     table.add("X", {"ensemble": 0.7 if i % 2 else 0.3, "prior": 0.5}, i % 2)
>>> row = table.summary()["X"]["ensemble"]
>>> row["accuracy"], round(row["log_loss"], 4), round(row["skill_vs_constant"], 3)
(1.0, 0.3567, 0.485)

A forecaster at 0.5 for every outcome (a rule member whose input these ticks lack) has no row: it is
the constant's. The counts name it.

>>> table.add("X", {"ensemble": 0.7, "prior": 0.5, "side": 0.5}, 1)
>>> sorted(table.summary()["X"]), table.summary()["_counts"]["X"]["at_one_half"]
(['constant', 'ensemble', 'prior'], ['side'])
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from streams.references import QueueImbalanceReference
from streams.scoring import BlockedScores, CalibrationBins, brier, log_loss

REFERENCES = ("constant", "prior", "persistence", "trade_side", "queue_imbalance")
POOLED = "pooled"
ALWAYS_SHOWN = ("ensemble", "constant", "prior")


class _Forecaster:
    __slots__ = ("n", "hits", "loss", "brier", "bins", "informative")

    def __init__(self):
        self.n = self.hits = 0
        self.loss = self.brier = 0.0
        self.bins = CalibrationBins()
        self.informative = False  # any forecast other than 0.5

    def merge(self, other: _Forecaster) -> None:
        self.n += other.n
        self.hits += other.hits
        self.loss += other.loss
        self.brier += other.brier
        self.bins.merge(other.bins)
        self.informative = self.informative or other.informative


class Evaluation:
    """Accumulates scored outcomes per symbol (see the module docstring)."""

    def __init__(self, block: int = 20, symbol_blocks: dict[str, int] | None = None):
        self.block = block
        # Block lengths of their own (a thin pair's outcomes lag more than a busy one's); else ``block``.
        self.symbol_blocks = symbol_blocks or {}
        self.forecasters: dict[str, dict[str, _Forecaster]] = defaultdict(dict)
        # Per symbol and forecaster: its block sums beside the two no-skill references' on the same
        # outcomes (a forecaster that starts later, e.g. once a book exists, is paired from then on).
        self.blocks: dict[str, dict[str, BlockedScores]] = defaultdict(dict)
        self.outcomes: dict[str, int] = defaultdict(int)
        self.flat: dict[str, int] = defaultdict(int)

    def add(self, symbol: str, probabilities: dict[str, float], y: int | None, hold: bool = False) -> None:
        """One outcome of a prediction: ``probabilities`` of up by forecaster (``ensemble`` and
        ``prior`` required, ``constant`` implied), ``y`` None when flat. ``hold``: more outcomes of the
        same event follow (the blocks stay open until :meth:`settle`; see :mod:`streams.scoring`)."""
        self.outcomes[symbol] += 1
        if y is None:
            self.flat[symbol] += 1
            return
        probabilities = {"constant": 0.5, **probabilities}
        scored = self.forecasters[symbol]
        for name, p in probabilities.items():
            forecaster = scored.get(name)
            if forecaster is None:
                forecaster = scored[name] = _Forecaster()
            forecaster.n += 1
            forecaster.hits += (p > 0.5) == (y == 1)
            forecaster.loss += log_loss(p, y)
            forecaster.brier += brier(p, y)
            forecaster.bins.add(p, y)
            forecaster.informative = forecaster.informative or p != 0.5
        blocks = self.blocks[symbol]
        for name in probabilities:
            paired = blocks.get(name)
            if paired is None:
                # Records written before the running prior was published carry none: vs constant only.
                references = tuple(r for r in ("prior", "constant") if r in probabilities)
                paired = blocks[name] = BlockedScores(tuple(dict.fromkeys((name, *references))),
                                                      self.symbol_blocks.get(symbol, self.block))
            paired.add(probabilities, y, hold)

    def settle(self, symbol: str) -> None:
        """The end of an event's outcomes (after :meth:`add` with ``hold``)."""
        for paired in self.blocks[symbol].values():
            paired.settle()

    def _rows(self, forecasters: dict[str, _Forecaster], symbols: list[str]) -> dict[str, dict[str, Any]]:
        rows = {}
        for name, f in forecasters.items():
            # One that never had an input (the last trade's side on klines, as a reference or the ``side``
            # member) is the constant again; the ensemble and both no-skill references always keep a row.
            if not f.n or _constant_again(name, f):
                continue
            row = {"n": f.n, "accuracy": f.hits / f.n, "log_loss": f.loss / f.n, "brier": f.brier / f.n,
                   "calibration_error": f.bins.error()}
            blocks = [self.blocks[symbol][name] for symbol in symbols if name in self.blocks[symbol]]
            for reference in ("prior", "constant"):
                s, low, high = _pooled_skill(blocks, name, reference)
                row[f"skill_vs_{reference}"] = s
                row[f"skill_vs_{reference}_low"] = low
                row[f"skill_vs_{reference}_high"] = high
            rows[name] = row
        return rows

    def summary(self) -> dict[str, Any]:
        """``{symbol: {forecaster: row}, ..., "pooled": {...}}`` plus ``outcomes`` and ``flat_share``
        per symbol under ``"_counts"``."""
        out: dict[str, Any] = {}
        pooled: dict[str, _Forecaster] = {}
        for symbol, forecasters in sorted(self.forecasters.items()):
            out[symbol] = self._rows(forecasters, [symbol])
            for name, f in forecasters.items():
                pooled.setdefault(name, _Forecaster()).merge(f)
        if len(self.forecasters) > 1:
            out[POOLED] = self._rows(pooled, list(self.forecasters))
        counts = {symbol: {"outcomes": n, "flat": self.flat[symbol], "flat_share": self.flat[symbol] / n if n else None,
                           "at_one_half": _at_one_half(self.forecasters.get(symbol, {}))}
                  for symbol, n in sorted(self.outcomes.items())}
        total = sum(self.outcomes.values())
        counts[POOLED] = {"outcomes": total, "flat": sum(self.flat.values()),
                          "flat_share": sum(self.flat.values()) / total if total else None,
                          "at_one_half": _at_one_half(pooled)}
        out["_counts"] = counts
        return out

    @classmethod
    def combine(cls, parts: list[Evaluation]) -> Evaluation:
        """Several runs as one table, each run's symbols kept apart: one symbol in two files (two days of
        BTCUSDT) is two series, whose blocks are never joined across the gap between them. Its pooled
        rows are the runs pooled; the parts are shared, not copied.

        >>> day = Evaluation(block=2)
        >>> for i in range(8):
        ...     day.add("X", {"ensemble": 0.6, "prior": 0.5}, i % 2)
        >>> both = Evaluation.combine([day, day]).summary()
        >>> both["_counts"]["pooled"]["outcomes"], round(both["pooled"]["ensemble"]["log_loss"], 4)
        (16, 0.7136)
        """
        if not parts:
            raise ValueError("nothing to combine")
        out = cls(block=max(part.block for part in parts))
        for i, part in enumerate(parts):
            for symbol in part.outcomes:
                key = f"{i + 1}:{symbol}"
                out.outcomes[key], out.flat[key] = part.outcomes[symbol], part.flat[symbol]
                if symbol in part.forecasters:
                    out.forecasters[key], out.blocks[key] = part.forecasters[symbol], part.blocks[symbol]
        return out

    def reliability(self, symbol: str, name: str = "ensemble") -> list[dict]:
        """Bins of a reliability diagram (mean forecast against observed frequency)."""
        if symbol != POOLED:
            return self.forecasters[symbol][name].bins.table()
        bins = CalibrationBins()
        for forecasters in self.forecasters.values():
            if name in forecasters:
                bins.merge(forecasters[name].bins)
        return bins.table()


def _constant_again(name: str, f: _Forecaster) -> bool:  # 0.5 at every scored outcome: no row (``_rows``)
    return bool(f.n) and name not in ALWAYS_SHOWN and not f.informative


def _at_one_half(forecasters: dict[str, _Forecaster]) -> list[str]:
    return sorted(name for name, f in forecasters.items() if _constant_again(name, f))


def _pooled_skill(blocks: list[BlockedScores], model: str, reference: str) -> tuple[float, float, float]:
    """Skill over the blocks of several symbols together (each symbol's blocks are its own)."""
    usable = [b for b in blocks if model in b.names and reference in b.names]
    if not usable:
        return math.nan, math.nan, math.nan
    if len(usable) == 1 or model == reference:
        return usable[0].skill(model, reference)
    merged = BlockedScores((model, reference), usable[0].block)
    for b in usable:
        i, j = b.names.index(model), b.names.index(reference)
        merged.sums += [[block[i], block[j]] for block in b.sums]
        merged.current[0] += b.current[i]
        merged.current[1] += b.current[j]
        merged.n += b.n
    return merged.skill(model, reference)


# What evaluate_run reads of a prediction and an outcome record.
READS = {"predictions": ("prediction_id", "symbol", "event_time_ms", "probability_up", "member_probabilities"),
         "outcomes": ("prediction_id", "symbol", "source", "label", "feedback_time_ms", "matured_tick_index")}


def read_for_scoring(stage: str, record: dict) -> dict:
    """The part of a ``predictions``, ``outcomes`` or ``features`` record that :func:`evaluate_run`
    reads (of a vector: its place and the queue imbalance), so that a long run's topics read for
    scoring need not be held whole."""
    if stage == "features":
        kept = {k: record[k] for k in ("symbol", "event_time_ms", "tick_index") if k in record}
        if "values" in record:
            book = record["values"].get("book_imbalance")
            kept["values"] = {} if book is None else {"book_imbalance": book}
        return kept
    return {k: record[k] for k in READS[stage] if k in record}


def _tick_index(prediction_id: str) -> int | None:
    """The vector index a prediction id ends with (``<symbol>-<event time>-<tick index>``)."""
    tail = prediction_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def typical_lag(lags: Sequence[int]) -> int:
    """Median number of predictions between a prediction and its outcome (at least 1)."""
    if not lags:
        return 1
    ordered = sorted(lags)
    return max(1, ordered[len(ordered) // 2])


class RunScorer:
    """The skill table of a run built as its records come: per symbol in vector order, the outcomes that
    matured at a vector given before the prediction made on it (as the models learn them), which is the
    order a partition pipeline's steps give them in. The queue-imbalance reference predicts and learns
    as they come; what is kept of a scored outcome is one double per forecaster, its label, its lag and
    whether it matured at the event of the outcome before it
    (a day of ticks is millions of outcomes), and the table is built by :meth:`evaluation` at the end,
    once the typical lag, and with it the block length of the intervals, is known."""

    def __init__(self):
        self._references: dict[str, QueueImbalanceReference] = {}
        self._has_book: dict[str, bool] = defaultdict(bool)
        self._issued: dict[str, int] = defaultdict(int)
        # prediction id -> symbol, probabilities, queue-imbalance input and forecast, position in its symbol
        self._made: dict[str, tuple[str, dict[str, float], dict[str, float] | None, float, int]] = {}
        self._labels: dict[str, array] = {}  # per symbol and scored outcome: 1, 0, or -1 when flat
        self._columns: dict[str, dict[str, array]] = {}  # per symbol and forecaster: NaN where it had none
        self._lags: dict[str, array] = defaultdict(lambda: array("q"))  # per symbol
        # Per symbol and scored outcome: 1 when it matured at the event of the one before (one block).
        self._same_event: dict[str, array] = {}
        self._last_event: dict[str, int] = {}

    def predict(self, prediction: dict, book: dict[str, float] | None = None) -> None:
        """A published prediction and the values of its vector (only ``book_imbalance`` is read)."""
        symbol = prediction["symbol"]
        reference = self._references.get(symbol)
        if reference is None:
            reference = self._references[symbol] = QueueImbalanceReference()
        x = QueueImbalanceReference.inputs(book or {})
        if x is not None:
            self._has_book[symbol] = True
        probabilities = {"ensemble": prediction["probability_up"], **prediction["member_probabilities"]}
        self._made[prediction["prediction_id"]] = (symbol, probabilities, x,
                                                   reference.predict(x) if x is not None else 0.5,
                                                   self._issued[symbol])
        self._issued[symbol] += 1

    def mature(self, prediction_id: str, label: int | None) -> bool:
        """The outcome of a prediction given before (False, and nothing scored, for any other id)."""
        made = self._made.pop(prediction_id, None)
        if made is None:
            return False
        symbol, probabilities, x, qi, own = made
        self._lags[symbol].append(self._issued[symbol] - own)
        if self._has_book[symbol]:
            probabilities["queue_imbalance"] = qi
        labels = self._labels.get(symbol)
        if labels is None:
            labels = self._labels[symbol] = array("b")
            self._columns[symbol] = {}
            self._same_event[symbol] = array("b")
        row = len(labels)
        self._same_event[symbol].append(self._last_event.get(symbol) == self._issued[symbol])
        self._last_event[symbol] = self._issued[symbol]
        labels.append(-1 if label is None else label)
        columns = self._columns[symbol]
        for name, p in probabilities.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = array("d", [math.nan]) * row
            column.append(p if label is not None else math.nan)
        for column in columns.values():
            if len(column) == row:
                column.append(math.nan)
        if label is not None and x is not None:
            self._references[symbol].learn(x, label)
        return True

    def add_step(self, step) -> None:
        """A partition pipeline's step (:class:`streams.pipeline.Step`) and the held ticks it released:
        its records come as the models see them, the vector, the outcomes that matured at it, then the
        prediction made on it."""
        book = None
        for output in step.records:
            record = output.record
            if output.stage == "features":
                book = record["values"]
            elif output.stage == "outcomes":
                if record["source"] in ("market", "dataset"):
                    self.mature(record["prediction_id"], record["label"])
            elif output.stage == "predictions":
                self.predict(record, book)
        for released, _ in step.released:
            self.add_step(released)

    def evaluation(self, block: int | None = None) -> Evaluation:
        """The table of every outcome given so far (blocks of ``block`` outcomes, by default at least four
        times the typical number of predictions between a prediction and its outcome, each symbol's own)."""
        out = Evaluation(block) if block else Evaluation(
            symbol_blocks={symbol: max(20, 4 * typical_lag(lags)) for symbol, lags in self._lags.items()})
        for symbol, labels in sorted(self._labels.items()):
            columns = list(self._columns[symbol].items())
            same, last = self._same_event[symbol], len(labels) - 1
            for k, y in enumerate(labels):
                if y < 0:
                    out.add(symbol, {}, None)
                else:
                    out.add(symbol, {name: column[k] for name, column in columns if column[k] == column[k]}, y,
                            hold=True)
                if k == last or not same[k + 1]:
                    out.settle(symbol)
        return out


def evaluate_run(predictions: list[dict], outcomes: list[dict], vectors: list[dict] | None = None,
                 block: int | None = None) -> Evaluation:
    """The skill table of one run from its records, in any order: predictions (deduplicated by id), market
    or dataset outcomes (feedback records with ``source`` market/dataset) and, when given, the feature
    vectors (for the queue-imbalance reference).

    Each symbol is replayed in vector order through a :class:`RunScorer`: an outcome is given just before
    the prediction on the vector that matured it (``matured_tick_index``). Records without that index
    (written before it was published) are placed before the first later prediction made at or after
    their feedback time."""
    from bisect import bisect_left

    by_id = {p["prediction_id"]: p for p in predictions}
    books = {}
    for vector in vectors or ():
        if "values" in vector and "tick_index" in vector:
            books[(vector["symbol"], vector["event_time_ms"], vector["tick_index"])] = vector["values"]
    issued_by_symbol: dict[str, list[dict]] = defaultdict(list)
    for prediction in by_id.values():
        issued_by_symbol[prediction["symbol"]].append(prediction)
    for issued in issued_by_symbol.values():
        issued.sort(key=lambda p: (_tick_index(p["prediction_id"]) or 0, p["event_time_ms"]))
    learned_before: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    seen = set()
    positions = {symbol: {p["prediction_id"]: i for i, p in enumerate(issued)}
                 for symbol, issued in issued_by_symbol.items()}
    times = {symbol: [p["event_time_ms"] for p in issued] for symbol, issued in issued_by_symbol.items()}
    index_positions = {symbol: {_tick_index(p["prediction_id"]): i for i, p in enumerate(issued)}
                       for symbol, issued in issued_by_symbol.items()}
    for outcome in outcomes:
        pid, symbol = outcome["prediction_id"], outcome["symbol"]
        if outcome["source"] not in ("market", "dataset") or pid in seen or pid not in positions.get(symbol, {}):
            continue
        seen.add(pid)
        own = positions[symbol][pid]
        matured = outcome.get("matured_tick_index")
        if matured is not None and matured in index_positions[symbol]:
            at = index_positions[symbol][matured]
        else:
            at = max(own + 1, bisect_left(times[symbol], outcome["feedback_time_ms"], lo=own + 1))
        learned_before[symbol][at].append(outcome)
    scorer = RunScorer()
    for symbol, issued in sorted(issued_by_symbol.items()):
        matured = learned_before[symbol]
        for index in range(len(issued) + 1):
            for outcome in matured.get(index, ()):
                scorer.mature(outcome["prediction_id"], outcome["label"])
            if index < len(issued):
                prediction = issued[index]
                scorer.predict(prediction, books.get((symbol, prediction["event_time_ms"],
                                                      _tick_index(prediction["prediction_id"]))))
    return scorer.evaluation(block)

