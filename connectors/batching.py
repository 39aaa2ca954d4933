"""Micro-batches of ticks for the tick-batches topic (``schemas/tick_batch.avsc``).

Why: a worker pays Faust's per-record machinery for every record it reads (a no-op agent drains 2-6k
records a second on this machine), while a trade or book-ticker tick costs the pipeline itself about
80 us (``bench/core.py`` on the BTCUSDT capture): on tick streams the framework, not the pipeline, is
the ceiling. livelearn's own connectors can therefore put several ticks of one Kafka key (one basis
group, so one partition) into one record, which the worker unpacks and applies one by one, exactly as
it applies ticks from the ticks topic (``agents/pipeline.py``). Ticks from other producers keep using
the ticks topic unchanged.

A batch holds at most ``size`` ticks and is sent once it is full, once its oldest tick has waited
``max_wait_ms`` of wall time when the next tick arrives, before a wait of the caller's that would
outlast that (:meth:`waiting`, a paced replay), and at :meth:`flush`: the latency a batch adds is
bounded by ``max_wait_ms``, or by the gap to the next tick when the caller does not say it waits. Ticks keep their order within a key; batches of
different keys may interleave differently from the ticks, which no output depends on (state and
outputs are per symbol, a basis group's pairs share a key).

>>> class Collect:
...     def __init__(self):
...         self.sent = []
...     def send(self, record, key, timestamp_ms):
...         self.sent.append((key, [t["n"] for t in record["ticks"]], timestamp_ms))
...     def flush(self):
...         pass
>>> sink = Collect()
>>> batcher = TickBatcher(sink, size=2, max_wait_ms=1e9, key_of=lambda s: s[:3])
>>> for n, symbol in enumerate(["BTCUSDT", "ETHUSDT", "BTCUSDC", "BTCUSDT"]):
...     batcher.send({"n": n}, symbol, 1000 + n)
>>> batcher.flush()
>>> sink.sent
[('BTC', [0, 2], 1002), ('ETH', [1], 1001), ('BTC', [3], 1003)]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class TickBatcher:
    """Collects ticks per Kafka key and hands ``{"ticks": [...]}`` records to ``sink`` (a
    :class:`connectors.sink.KafkaSink` for the ``tick_batch`` schema, keyed as given)."""

    def __init__(self, sink: Any, size: int = 100, max_wait_ms: float = 5.0,
                 key_of: Callable[[str], str] | None = None, clock: Callable[[], float] = time.monotonic):
        if size < 1:
            raise ValueError("a batch holds at least one tick")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        self._sink, self._size, self._wait_s = sink, size, max_wait_ms / 1000.0
        self._key_of, self._clock = key_of, clock
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._since: dict[str, float] = {}
        self._latest: dict[str, int] = {}  # the newest tick's timestamp: the batch record's
        self._batches = 0
        self._ticks = 0

    @property
    def batches(self) -> int:
        """Batch records sent so far."""
        return self._batches

    @property
    def produced(self) -> int:
        """Ticks taken so far (in batches sent or pending)."""
        return self._ticks

    @property
    def rejected(self) -> Any:
        """The sink's dead-letter counts."""
        return self._sink.rejected

    def send(self, tick: dict[str, Any], symbol: str, timestamp_ms: int) -> None:
        """Add a tick (the :class:`connectors.sink.KafkaSink` signature, so replay takes either)."""
        key = self._key_of(symbol) if self._key_of is not None else symbol
        now = self._clock()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = []
            self._since[key] = now
        pending.append(tick)
        self._ticks += 1
        self._latest[key] = timestamp_ms
        if len(pending) >= self._size:
            self._emit(key)
        if self._pending and now - min(self._since.values()) >= self._wait_s:
            for stale in [k for k, since in self._since.items() if now - since >= self._wait_s]:
                self._emit(stale)

    def waiting(self, seconds: float) -> None:
        """The caller is about to wait ``seconds`` for its next tick (a paced replay): partial batches
        whose wait ends meanwhile leave now, instead of when the next tick comes (a minute later, for
        one-minute klines replayed in real time)."""
        deadline = self._clock() + seconds - self._wait_s
        for key in [k for k, since in self._since.items() if since <= deadline]:
            self._emit(key)

    def reject(self, *args: Any, **kwargs: Any) -> None:
        self._sink.reject(*args, **kwargs)

    def flush(self) -> None:
        """Send every partial batch, then flush the sink."""
        for key in list(self._pending):
            self._emit(key)
        self._sink.flush()

    def _emit(self, key: str) -> None:
        ticks = self._pending.pop(key)
        del self._since[key]
        self._sink.send({"ticks": ticks}, key, self._latest.pop(key))
        self._batches += 1
