"""External feedback: what a record on the ``feedback`` topic must hold before a learner uses it.

Why here and not only in ``livelearn produce feedback``: any Kafka client may write the topic, and Avro
lets through what the learner cannot take. A label of 2 or -5 fits ``["null", "int"]``; learned, it
was scored into every member's and every reference's log-loss (a label of 2 gives a negative loss)
and fed to the running prior, and a non-finite ``realised_return`` fits ``["null", "double"]`` and left
the learner's typical move NaN or infinite for good, so every published score after it was wrong (a
simple return below -1, a price below zero, is refused too).
Each is refused before the learner sees it, with the reason (dead-lettered as ``invalid_feedback``);
``livelearn produce feedback`` refuses the same before producing (:func:`connectors.json_lines.parse_feedback`).

A label of null (a flat move) with no score is accepted and teaches nothing, as a flat market outcome
does.

>>> check_feedback({"prediction_id": "BTCUSDT-1-1", "symbol": "BTCUSDT", "label": 1})
>>> check_feedback({"prediction_id": "BTCUSDT-1-1", "symbol": "BTCUSDT", "label": 2})
Traceback (most recent call last):
...
streams.feedback.InvalidFeedback: invalid_feedback: label 2 is not 0, 1 or null (null: a flat move)
"""

from __future__ import annotations

import math
from typing import Any


class InvalidFeedback(ValueError):
    """Feedback a learner must not learn; ``code`` is the dead-letter reason code."""

    code = "invalid_feedback"

    def __init__(self, message: str):
        super().__init__(f"{self.code}: {message}")


def check_feedback(feedback: dict[str, Any]) -> None:
    """Raise :class:`InvalidFeedback` when the record must not be learned."""
    label = feedback.get("label")
    if label is not None and (isinstance(label, bool) or label not in (0, 1)):
        raise InvalidFeedback(f"label {label!r} is not 0, 1 or null (null: a flat move)")
    for name in ("realised_return", "score"):
        value = feedback.get(name)
        if value is not None and not math.isfinite(value):
            raise InvalidFeedback(f"{name} is not a finite number ({value!r})")
    if (realised := feedback.get("realised_return")) is not None and realised < -1.0:
        raise InvalidFeedback(f"realised_return {realised!r} is below -1: a simple return cannot take a price below 0")
    if feedback.get("prediction_id") is None and feedback.get("event_time_ms") is None:
        raise InvalidFeedback("feedback needs a prediction_id, or the predicted vector's event_time_ms")
