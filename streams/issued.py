"""The predictions a symbol's learner remembers for external feedback that names one by id.

Why some are kept as bytes: a worker pickles each partition's state on its event loop at every
checkpoint (every few seconds), and the 2,000 remembered predictions (features, every variant's
forecast, the references: about 70 numbers each) were three quarters of that pickle, about 30 of
40 ms on the synthetic stream (measured with ``snapshots.dumps``): every tick arriving meanwhile
waited. Once a prediction's outcome has matured nothing in it changes any more, so it is pickled then,
once (:meth:`IssuedPredictions.freeze`), and a checkpoint copies its bytes. Feedback naming a frozen
prediction rebuilds it through the snapshot allowlist (:func:`streams.snapshots.loads`): the same
numbers, so learning from it is unchanged. The learner empties a matured prediction's forecasts and
references before it is frozen (scored and learned by then; feedback reads its features): 925 instead
of 1,640 bytes and 4.7 instead of 7.6 us a prediction on a kline day (after that day the partition's
pickled state 2.97 instead of 3.99 MB), and still the same class, so checkpoints move between workers
of this version and the one before in both directions.

>>> issued = IssuedPredictions(keep=2)
>>> issued.add("a", {"x": 1.0}); issued.add("b", {"x": 2.0})
>>> issued.freeze("a")
>>> issued.get("a"), "a" in issued, len(issued), issued.frozen
({'x': 1.0}, True, 2, 1)
>>> issued.add("c", {"x": 3.0})  # the oldest is forgotten
>>> "a" in issued, issued.get("c")
(False, {'x': 3.0})
>>> issued.get("a")
Traceback (most recent call last):
...
KeyError: 'a'

Feedback may name a prediction by its symbol and event time instead of its id (the schema's
``prediction_id: null``): the latest one remembered at that time answers.

>>> issued.add(prediction_id("BTCUSDT", 7, 41), {}); issued.add(prediction_id("BTCUSDT", 7, 42), {})
>>> issued.latest_at("BTCUSDT", 7), issued.latest_at("BTCUSDT", 8)
('BTCUSDT-7-42', None)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from streams import snapshots


def prediction_id(symbol: str, event_time_ms: int, tick_index: int) -> str:
    """The id a learner gives the prediction made on a symbol's vector."""
    return f"{_at(symbol, event_time_ms)}{tick_index}"


def made_at(named: str) -> int | None:
    """The event time a prediction id says its prediction was made at (None: not an id of this form).

    >>> made_at(prediction_id("BTC-PERP", 1_700_000_000_000, 3)), made_at("desk-42")
    (1700000000000, None)
    """
    parts = named.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() else None


def _at(symbol: str, event_time_ms: int) -> str:
    """What the ids of a symbol's predictions at one event time begin with."""
    return f"{symbol}-{event_time_ms}-"


class IssuedPredictions:
    """The last ``keep`` predictions by id, oldest first; matured ones frozen to bytes."""

    __slots__ = ("keep", "_items")

    def __init__(self, keep: int):
        if keep < 1:
            raise ValueError("keep must be at least 1 prediction")
        self.keep = keep
        self._items: OrderedDict[str, Any] = OrderedDict()

    def add(self, prediction_id: str, item: Any) -> None:
        self._items[prediction_id] = item
        if len(self._items) > self.keep:
            self._items.popitem(last=False)

    def freeze(self, prediction_id: str) -> None:
        """The prediction will not change any more (its outcome has been learned): keep it pickled.
        A prediction already forgotten is ignored."""
        item = self._items.get(prediction_id)
        if item is not None and not isinstance(item, bytes):
            self._items[prediction_id] = snapshots.dumps(item)

    def get(self, prediction_id: str) -> Any:
        """The prediction (rebuilt if frozen); KeyError if unknown or forgotten."""
        item = self._items[prediction_id]
        return snapshots.loads(item) if isinstance(item, bytes) else item

    def __contains__(self, prediction_id: object) -> bool:
        return prediction_id in self._items

    def latest_at(self, symbol: str, event_time_ms: int) -> str | None:
        """The id of the newest remembered prediction of ``symbol`` at ``event_time_ms`` (several ticks
        may share a millisecond), None if none is remembered. Scans the ids (feedback is rare)."""
        prefix = _at(symbol, event_time_ms)
        return next((key for key in reversed(self._items) if key.startswith(prefix)), None)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def newest(self) -> str | None:
        """The id of the prediction remembered last (None: none yet)."""
        return next(reversed(self._items), None)

    @property
    def frozen(self) -> int:
        """How many are kept as bytes."""
        return sum(isinstance(item, bytes) for item in self._items.values())

    def __getstate__(self) -> dict[str, Any]:
        return {"keep": self.keep, "items": self._items}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.keep, self._items = state["keep"], state["items"]

    @classmethod
    def of(cls, items: OrderedDict[str, Any], keep: int) -> IssuedPredictions:
        """From the plain ordered dict of ids a learner kept before (checkpoints of earlier versions)."""
        issued = cls(keep)
        issued._items = OrderedDict(items)
        return issued
