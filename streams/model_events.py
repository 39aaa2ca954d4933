"""Model events a partition publishes (``model-events``): the learner's own (promotions, rollbacks,
refused updates) as records, and the one rule by which a concept-drift alert changes the champion.

Both are plain functions of a :class:`streams.learning.SymbolLearner` and a record, so the worker, the
backtest and a unit test apply the same rule; :func:`models_summary` reads the published ones back
(``livelearn models``). Event ids are derived from what caused the event (the
alert id, or the learner's version and reason), so a replay or a restart republishes the same ids.

>>> model_event_record("BTCUSDT", {"kind": "PROMOTION", "model_id": "ensemble/fast", "version": 2,
...                                "reason": "r", "details": {}, "event_time_ms": 1})["alert_id"] is None
True
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.learning import SymbolLearner

SEVERE = ("HIGH", "CRITICAL")


def drift_response(learner: SymbolLearner, alert: dict[str, Any], enabled: bool = True) -> list[dict[str, Any]]:
    """The response to a concept-drift alert, as model events carrying the alert id (the one rule):
    a HIGH or CRITICAL one resets the champion's worst member; a lower one puts every member that
    has a learning-rate schedule back to its initial rate. Nothing for other alerts."""
    if not enabled or alert["kind"] != "CONCEPT" or alert["status"] != "FIRING":
        return []
    if alert["severity"] in SEVERE:
        member = learner.worst_member()
        learner.reset_member(member)
        changes = [(member, "RESET", f"concept drift ({alert['severity']}): reset the worst member {member}")]
    else:
        changes = []
        for member, model in learner.ensemble.members.items():
            if hasattr(model, "raise_learning_rate"):
                model.raise_learning_rate()
                changes.append((member, "LEARNING_RATE",
                                f"concept drift ({alert['severity']}): {member} back to its initial rate"))
    return [{"event_id": uuid.uuid5(uuid.NAMESPACE_URL, alert["alert_id"] + kind).hex, "symbol": learner.symbol,
             "model_id": f"{learner.model_id}/{member}", "kind": kind, "version": learner.version, "reason": reason,
             "alert_id": alert["alert_id"], "details": {"p_value": repr(alert["p_value"]),
                                                       "effect_size": repr(alert["effect_size"])},
             "event_time_ms": alert["created_time_ms"]} for member, kind, reason in changes]


def model_event_record(symbol: str, event: dict[str, Any]) -> dict[str, Any]:
    """A learner's event (promotion, rollback, refused update) as a ModelEvent record."""
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{symbol}|{event['kind']}|{event['version']}|"
                                              f"{event['event_time_ms']}|{event['reason']}").hex
    return {"event_id": event_id, "symbol": symbol, "alert_id": None, **event}


def models_summary(performance: list[dict], events: list[dict], recent: int = 5) -> dict[str, dict]:
    """Per symbol: the latest performance record, the most recent lifecycle events (promotions,
    rollbacks, resets) and how many learning steps the guard refused."""
    out: dict[str, dict] = {}
    for record in performance:
        current = out.setdefault(record["symbol"], {"performance": None, "events": [], "refused_updates": 0})
        if current["performance"] is None or record["labelled"] >= current["performance"]["labelled"]:
            current["performance"] = record
    for event in sorted(events, key=lambda e: e["event_time_ms"]):
        current = out.setdefault(event["symbol"], {"performance": None, "events": [], "refused_updates": 0})
        if event["kind"] == "REJECTED_UPDATE":
            current["refused_updates"] += 1
        elif event["kind"] != "CHECKPOINT":
            current["events"].append(event)
    for current in out.values():
        current["events"] = current["events"][-recent:]
    return out
