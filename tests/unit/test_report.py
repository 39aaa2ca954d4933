"""The report escapes every string that comes from a topic: hostile records add no markup to the page."""

from __future__ import annotations

from html.parser import HTMLParser

from agents.settings import Settings
from cli.report import write_report

HOSTILE = '<script>alert("x")</script>'
ATTRIBUTE = "\"' onmouseover=alert(1) x='"
MATH = "$\\frac{1}{$"


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.names.add(tag)
        self.attributes.update(name for name, _ in attrs)


def hostile(tag: str) -> str:
    return f"{tag}{HOSTILE}{ATTRIBUTE}{MATH}"


def run_with_hostile_strings(n: int = 60) -> dict[str, list[dict]]:
    symbol = hostile("SYM")
    member = hostile("member")
    predictions, feedback, features = [], [], []
    for i in range(n):
        pid = hostile(f"id{i}")
        p = 0.3 + 0.4 * (i % 2)
        predictions.append({
            "prediction_id": pid, "symbol": symbol, "event_time_ms": 1_700_000_000_000 + i * 60_000,
            "model_id": hostile("model"), "model_version": 1, "horizon_ticks": 5, "probability_up": p,
            "predicted_up": p > 0.5, "confidence": 0.5, "member_probabilities": {member: p, "persistence": 0.5},
            "member_weights": {member: 1.0}, "feature_set": hostile("fs"), "latency_ms": 1.0,
        })
        feedback.append({"prediction_id": pid, "symbol": symbol, "event_time_ms": 1_700_000_000_000 + i * 60_000,
                         "label": i % 2, "realised_return": 0.001, "score": None, "source": "market",
                         "feedback_time_ms": 1_700_000_000_000 + (i + 5) * 60_000})
        features.append({"symbol": symbol, "event_time_ms": 1_700_000_000_000 + i * 60_000, "price": 100.0 + i})
    alert = {"alert_id": hostile("alert"), "symbol": symbol, "kind": hostile("kind"), "test_name": hostile("test"),
             "statistic": 1.0, "p_value": 1e-6, "adjusted_p_value": 1e-5, "effect_size": 0.4,
             "reference_start_ms": 0, "reference_end_ms": 1, "current_start_ms": 2, "current_end_ms": 3,
             "severity": hostile("sev"), "status": "FIRING", "affected_features": [hostile("feature")],
             "recommended_action": hostile("action"), "created_time_ms": 1_700_000_000_000 + 30 * 60_000}
    event = {"event_id": "e", "symbol": symbol, "model_id": hostile("model"), "kind": hostile("kind"), "version": 2,
             "reason": hostile("reason"), "alert_id": None, "details": {}, "event_time_ms": 1}
    dead = {"reason": hostile("reason"), "reason_code": hostile("code"), "stage": hostile("stage"),
            "source_topic": hostile("topic"), "source_partition": 0, "source_offset": 1, "key": None, "value": b"",
            "error_time_ms": 1}
    return {"predictions": predictions, "features": features, "feedback": feedback, "alerts": [alert],
            "model_events": [event], "dead_letters": [dead]}


def test_hostile_strings_in_every_field_are_escaped(tmp_path):
    settings = Settings(topic_prefix=hostile("prefix"))
    out = write_report(settings, tmp_path / "report.html", run_with_hostile_strings())
    page = out.read_text()
    # The payloads are on the page, as text.
    for tag in ("prefix", "SYM", "member", "alert", "kind", "test", "sev", "feature", "model", "reason", "code",
                "stage", "topic"):
        assert f"{tag}&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page, tag
    # And nowhere as markup: parsed as a browser would, the page has no script element and no
    # attribute beyond the template's own.
    tags = Tags()
    tags.feed(page)
    assert "script" not in tags.names
    assert tags.attributes <= {"charset", "alt", "src"}
    # The run's drift alerts against their bound: its one FIRING alert is of no channel the bound names.
    assert "drift alerts over 60 vectors, per 10k" in page
    # The plots were drawn (symbol and member names with '$' are not parsed as mathtext).
    assert page.count("data:image/png;base64,") >= 2


def test_a_long_run_is_drawn_from_what_the_report_reads_at_bounded_cost(tmp_path):
    """The report reads only some fields of the busy topics (load_run keeps those); its rolling scores
    cost the same per point whatever the window, and a line draws at most MAX_POINTS points."""
    import random

    from cli.report import MAX_POINTS, ROLLING, _drawn_forecasters, _report_fields, _rolling, _thinned
    from streams.scoring import log_loss

    run = run_with_hostile_strings(300)
    for prediction in run["predictions"]:
        prediction.update(predicted_up=True, model_version=3, feature_set="extra")
    kept = {**run, **{stage: [_report_fields(topic, r) for r in run[stage]] for stage, topic in
                      (("predictions", "predictions"), ("feedback", "outcomes"), ("features", "features"))}}
    assert "model_version" not in kept["predictions"][0] and "member_weights" in kept["predictions"][0]
    assert write_report(Settings(), tmp_path / "kept.html", kept).read_text().count("data:image/png;base64,") >= 2

    rng = random.Random(1)
    predictions = [{"prediction_id": str(i), "probability_up": rng.random(), "member_probabilities": {}}
                   for i in range(1000)]
    labels = {str(i): {"label": rng.randint(0, 1)} for i in range(0, 1000, 3)}
    times, accuracy, losses = _rolling("ensemble", list(range(1000)), predictions, labels)
    scored = [(p["probability_up"], labels[p["prediction_id"]]["label"]) for p in predictions if p["prediction_id"] in labels]
    window = scored[-ROLLING:]
    assert times[-1] == 999 and len(times) == len(scored)
    assert accuracy[-1] == sum((p > 0.5) == (y == 1) for p, y in window) / len(window)
    assert abs(losses[-1] - sum(log_loss(p, y) for p, y in window) / len(window)) < 1e-12
    klines = [{"member_probabilities": {"logreg": 0.6, "trade_side": 0.5, "prior": 0.5 + i / 100}} for i in range(3)]
    assert _drawn_forecasters(klines) == ["ensemble", "logreg", "prior"]
    assert all(len(line) <= MAX_POINTS for line in _thinned(list(range(3 * MAX_POINTS + 7)), [0.0] * (3 * MAX_POINTS + 7)))


def test_the_report_counts_the_runs_drift_alerts_against_their_bound(tmp_path):
    """Under the alerts table, per symbol: FIRING alerts per 10k vectors (the run's predictions) and
    channel, beside the bound; a RESOLVED record is no second alert."""
    run = run_with_hostile_strings()
    firing = {**run["alerts"][0], "kind": "VARIANCE"}
    run["alerts"] = [firing, {**firing, "status": "RESOLVED"}]
    page = write_report(Settings(), tmp_path / "report.html", run).read_text()
    assert "drift alerts over 60 vectors, per 10k" in page
    assert "VARIANCE 1 = 166.67 [4.22, 928.61]" in page and "FEATURE 0" in page
