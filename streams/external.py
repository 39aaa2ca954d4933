"""Inputs from outside the market feed (agents.external): what a record of the ``feedback`` or the
``external-features`` topic must hold before a learner uses it.

Why here and not only in ``livelearn produce feedback`` and ``replay-dataset``: any Kafka client may
write those topics, and Avro lets through what a learner cannot take. A label of 2 fits
``["null", "int"]``, a NaN return ``["null", "double"]``. Before this check, feedback with them was
scored into every member's and reference's log-loss (a label of 2 gives a negative loss) and left the
learner's typical move NaN for good; external feedback no longer reaches the scores (it teaches the
members only, streams.learning), but a label of 2 would still reach every member, and a dataset row's
label and price reach everything. Each is refused before a learner sees it, with its reason
(dead-lettered as ``invalid_feedback`` or ``invalid_features``); ``livelearn produce feedback`` refuses
the same before producing (:func:`connectors.json_lines.parse_feedback`). A simple return below -1
(a price below zero) is refused too.

A label of null (a flat move) is accepted and teaches nothing, as a flat market outcome
does. A feature vector (:func:`vector_problem`) carries a label too (a labelled dataset's row), and
its reference price makes every realised return: each is held to the same rules.

>>> check_feedback({"prediction_id": "BTCUSDT-1-1", "symbol": "BTCUSDT", "label": 1})
>>> check_feedback({"prediction_id": "BTCUSDT-1-1", "symbol": "BTCUSDT", "label": 2})
Traceback (most recent call last):
...
streams.external.InvalidFeedback: invalid_feedback: label 2 is not 0, 1 or null (null: a flat move)
>>> vector_problem({"symbol": "S", "tick_index": 3, "price": 0.0, "values": {"x": 1.0}})
'price of S tick 3 is 0.0, not a positive finite number'
"""

from __future__ import annotations

import math
from typing import Any


class InvalidFeedback(ValueError):
    """Feedback a learner must not learn; ``code`` is the dead-letter reason code."""

    code = "invalid_feedback"

    def __init__(self, message: str):
        super().__init__(f"{self.code}: {message}")


def _bad_label(label: Any) -> bool:
    return label is not None and (isinstance(label, bool) or label not in (0, 1))


def check_feedback(feedback: dict[str, Any]) -> None:
    """Raise :class:`InvalidFeedback` when the record must not be learned."""
    label = feedback.get("label")
    if _bad_label(label):
        raise InvalidFeedback(f"label {label!r} is not 0, 1 or null (null: a flat move)")
    for name in ("realised_return", "score"):
        value = feedback.get(name)
        if value is not None and not math.isfinite(value):
            raise InvalidFeedback(f"{name} is not a finite number ({value!r})")
    if (realised := feedback.get("realised_return")) is not None and realised < -1.0:
        raise InvalidFeedback(f"realised_return {realised!r} is below -1: a simple return cannot take a price below 0")
    if feedback.get("prediction_id") is None and feedback.get("event_time_ms") is None:
        raise InvalidFeedback("feedback needs a prediction_id, or the predicted vector's event_time_ms")


def vector_problem(vector: dict[str, Any]) -> str | None:
    """Why a feature vector must not be predicted on or learned from (None: it may): a value that is
    not finite, a reference price (``price``, ``mid_price``) that is not a positive finite number, a
    label other than 0, 1 or null. Run on every vector, the feature engine's too: the loop over values
    was there before, the rest is three lookups."""
    for name, value in vector["values"].items():
        if not math.isfinite(value):
            return f"feature {name} of {_where(vector)} is {value!r}"
    for name in ("price", "mid_price"):
        value = vector.get(name)
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"{name} of {_where(vector)} is {value!r}, not a positive finite number"
    if _bad_label(label := vector.get("label")):
        return f"label of {_where(vector)} is {label!r}, not 0, 1 or null"
    return None


def _where(vector: dict[str, Any]) -> str:
    return f"{vector['symbol']} tick {vector['tick_index']}"
