"""Feedback and feature vectors from any Kafka client (streams.external): what Avro lets through but a
learner must not learn is refused with its reason and changes nothing; feedback may name a prediction
by its symbol and event time."""

from __future__ import annotations

import math

import pytest

from connectors.json_lines import InputError, parse_feedback
from streams import snapshots
from streams.learning import LearnerConfig
from streams.pipeline import PartitionPipeline, PipelineConfig
from streams.tick_gate import GateConfig
from streams.ticks import make_tick

T0 = 1_700_000_000_000


def pipeline_with_predictions(n: int = 40) -> tuple[PartitionPipeline, list[dict]]:
    pipeline = PartitionPipeline(PipelineConfig(learner=LearnerConfig(members=("logreg", "micro"), horizon_ticks=5)))
    predictions = []
    for i in range(n):
        tick = make_tick("BTCUSDT", "TRADE", T0 + i * 1000, 100.0 + (i * 7 % 5), 1.0, is_buyer_maker=i % 3 == 0)
        predictions += [o.record for o in pipeline.on_tick(tick).records if o.stage == "predictions"]
    return pipeline, predictions


def feedback(prediction: dict, **fields) -> dict:
    """As the Avro codec gives a record of the feedback topic: every field present."""
    return {"prediction_id": prediction["prediction_id"], "symbol": "BTCUSDT", "event_time_ms": None, "label": 1,
            "realised_return": 0.001, "score": None, "source": "desk", "feedback_time_ms": T0 + 60_000,
            "matured_tick_index": None, **fields}


@pytest.mark.parametrize("bad", [{"label": 2}, {"label": -5}, {"label": 2**31 - 1},
                                 {"realised_return": math.nan}, {"realised_return": math.inf},
                                 {"realised_return": -1.5}, {"score": -math.inf},
                                 {"prediction_id": None, "event_time_ms": None}])
def test_feedback_a_learner_cannot_take_is_refused_with_its_reason_and_changes_nothing(bad):
    """A label of 2 fits Avro's ``["null", "int"]``: learned, it went into every score (a negative
    log-loss) and the running prior; a NaN return left the learner's typical move NaN for good."""
    pipeline, predictions = pipeline_with_predictions()
    before = snapshots.dumps(pipeline)
    step = pipeline.on_feedback(feedback(predictions[10], **bad))
    assert step.rejection is not None and step.rejection[:2] == ("learn", "invalid_feedback")
    assert step.records == [] and snapshots.dumps(pipeline) == before
    good = pipeline.on_feedback(feedback(predictions[10], label=0, realised_return=-0.002))
    assert good.rejection is None and snapshots.dumps(pipeline) != before
    learner = pipeline.learners["BTCUSDT"]
    assert math.isfinite(learner.typical_move)
    assert all(math.isfinite(s["log_loss"]) and s["log_loss"] > 0
               for s in learner.performance().values() if s.get("log_loss") is not None)


def test_feedback_may_name_its_prediction_by_symbol_and_event_time():
    """The schema's ``prediction_id: null``: the prediction made at that event time learns the label,
    exactly as when it is named by id; a time with no prediction remembered is ``unknown_prediction``."""
    by_id, predictions = pipeline_with_predictions()
    by_time, _ = pipeline_with_predictions()
    target = predictions[12]
    assert by_id.on_feedback(feedback(target, label=0)).rejection is None
    assert by_time.on_feedback(feedback(target, label=0, prediction_id=None,
                                        event_time_ms=target["event_time_ms"])).rejection is None
    assert snapshots.dumps(by_time.learners) == snapshots.dumps(by_id.learners)  # (wall-clock latencies aside)
    assert snapshots.dumps(by_time.learners) != snapshots.dumps(pipeline_with_predictions()[0].learners)
    step = by_time.on_feedback(feedback(target, prediction_id=None, event_time_ms=T0 - 1))
    assert step.rejection[1] == "unknown_prediction" and f"at event time {T0 - 1}" in step.rejection[2]


def test_livelearn_produce_feedback_refuses_what_a_worker_would():
    with pytest.raises(InputError, match="below -1"):
        parse_feedback(b'{"symbol": "BTCUSDT", "prediction_id": "p", "label": 1, "realised_return": -2.0}', T0)
    assert parse_feedback(b'{"symbol": "btcusdt", "event_time_ms": 5, "label": 0}', T0)["label"] == 0
    with pytest.raises(InputError, match="does not fit a 64-bit integer"):
        parse_feedback(b'{"symbol": "BTCUSDT", "prediction_id": "p", "label": 1, "feedback_time_ms": 1e308}', T0)


@pytest.mark.parametrize("bad", [{"label": 2}, {"price": 0.0}, {"price": math.nan}, {"mid_price": -1.0},
                                 {"values": {"x": 1.0, "y": math.inf}}])
def test_a_labelled_vector_a_learner_cannot_take_is_refused_and_changes_nothing(bad):
    """A dataset row's label fits ``["null", "int"]`` as 2 does, and its reference price makes every
    realised return: refused as ``invalid_features`` like a non-finite value."""
    pipeline = PartitionPipeline(PipelineConfig(learner=LearnerConfig(members=("logreg",), horizon_ticks=1)))

    def row(i: int, **fields) -> dict:
        return {"symbol": "ROWS", "event_time_ms": T0 + i, "tick_kind": "KLINE", "price": 1.0, "mid_price": None,
                "tick_index": i, "feature_set": "dataset-x-y", "values": {"x": i % 3 - 1.0, "y": 0.5},
                "not_ready": [], "label": i % 2, **fields}

    for i in range(1, 20):
        assert pipeline.on_vector(row(i)).rejection is None
    before = snapshots.dumps(pipeline.learners)
    step = pipeline.on_vector(row(20, **bad))
    assert step.rejection[:2] == ("predict", "invalid_features") and step.records == []
    assert snapshots.dumps(pipeline.learners) == before
    assert pipeline.on_vector(row(20)).rejection is None


def test_external_feedback_teaches_the_members_and_leaves_the_market_scores_and_references_alone():
    """An external label may answer another question than the market outcome (was the trade
    profitable?): the members learn it; the published scores, the skill blocks, the typical move and
    the no-skill references stay those of the market outcomes."""
    pipeline, predictions = pipeline_with_predictions()
    learner = pipeline.learners["BTCUSDT"]
    market = snapshots.dumps((learner.scores, learner.blocks, learner.typical_move, learner.persistence,
                              learner.trade_side))
    members = snapshots.dumps(learner.variants)
    for prediction in predictions[5:25]:
        assert pipeline.on_feedback(feedback(prediction, label=1, realised_return=0.05)).rejection is None
    assert snapshots.dumps((learner.scores, learner.blocks, learner.typical_move, learner.persistence,
                            learner.trade_side)) == market
    assert snapshots.dumps(learner.variants) != members


def _ticks(start: int, stop: int) -> list[dict]:
    return [make_tick("BTCUSDT", "TRADE", T0 + i * 1000, 100.0 + (i * 7 % 5), 1.0, is_buyer_maker=i % 3 == 0)
            for i in range(start, stop)]


@pytest.mark.parametrize("by_time", [False, True])
def test_feedback_on_a_prediction_still_to_be_made_again_is_learned_once_it_is(by_time):
    """A worker killed between publishing predictions and checkpointing them: its successor restores
    the checkpoint and makes them again as it re-applies the ticks, but feedback on one of them
    (answering the first publication) may reach it first. That feedback was dead-lettered as unknown and
    never learned. Now it is held, and learned right after its prediction is made again: the later
    predictions equal those of a pipeline that learned it right after that prediction."""
    def run(feedback_at: int | None, early: bool = False) -> tuple[list[dict], list]:
        pipeline, _ = pipeline_with_predictions(0)
        for tick in _ticks(0, 40):  # the checkpoint: 40 ticks in
            pipeline.on_tick(tick)
        pipeline = snapshots.loads(snapshots.dumps(pipeline))
        released = []
        if early:
            held = pipeline.on_feedback(answer, origin="feedback@7")
            assert held.rejection is None and held.records == [] and held.stats.model_events == ["FEEDBACK_HELD"]
            assert not held.stats.feedback_learned
        later = []
        for tick in _ticks(40, 80):
            step = pipeline.on_tick(tick)
            released += step.released
            later += [{k: v for k, v in o.record.items() if k != "latency_ms"}
                      for o in step.records if o.stage == "predictions" and tick["event_time_ms"] > T0 + 60_000]
            if tick["event_time_ms"] == feedback_at:
                assert pipeline.on_feedback(answer).stats.feedback_learned
        assert early or pipeline.early is None
        return later, released

    _, made = pipeline_with_predictions(60)
    target = made[50]
    answer = feedback(target, label=0, **({"prediction_id": None, "event_time_ms": target["event_time_ms"]}
                                          if by_time else {}))
    learned_in_time, _ = run(target["event_time_ms"])
    never, _ = run(None)
    held, released = run(None, early=True)
    assert [(step.rejection, step.stats.feedback_learned, origin) for step, origin in released] == [
        (None, True, "feedback@7")]
    assert held == learned_in_time and held != never


def test_held_feedback_survives_a_checkpoint():
    pipeline, predictions = pipeline_with_predictions(20)
    pipeline.on_feedback(feedback(predictions[-1], prediction_id=f"BTCUSDT-{T0 + 25_000}-26"), origin="a")
    restored = snapshots.loads(snapshots.dumps(pipeline))
    released = [pair for tick in _ticks(20, 30) for pair in restored.on_tick(tick).released]
    assert [(step.rejection, origin) for step, origin in released] == [(None, "a")] and len(restored.early) == 0


def test_held_feedback_whose_prediction_is_not_made_is_refused_once_its_time_has_passed():
    """Feedback naming a later prediction that is never made (the tick index does not exist) is held
    until a later prediction of its symbol comes, then dead-lettered as unknown with its own origin; at
    the end of a backtest what is still held is refused the same way."""
    pipeline, predictions = pipeline_with_predictions(20)
    ahead = T0 + 25_000
    never = feedback(predictions[-1], prediction_id=f"BTCUSDT-{ahead}-999")
    last = feedback(predictions[-1], prediction_id=f"BTCUSDT-{T0 + 10**9}-1")
    assert pipeline.on_feedback(never, origin="a").rejection is None
    assert pipeline.on_feedback(last, origin="b").rejection is None and len(pipeline.early) == 2
    steps = [pipeline.on_tick(tick) for tick in _ticks(20, 30)]
    refused = [(step.rejection[1], origin, step.rejection[2]) for s in steps for step, origin in s.released]
    assert refused == [("unknown_prediction", "a",
                        f"no prediction 'BTCUSDT-{ahead}-999' for BTCUSDT (unknown or expired)")]
    assert steps[6].released and not any(s.released for i, s in enumerate(steps) if i != 6)  # the tick after 25 s
    [(step, origin)] = pipeline.refuse_held_feedback()
    assert origin == "b" and step.rejection[1] == "unknown_prediction" and "the input ended" in step.rejection[2]


def test_feedback_held_beyond_the_limit_refuses_the_one_held_longest():
    pipeline, predictions = pipeline_with_predictions(20)
    pipeline.on_feedback(feedback(predictions[-1], prediction_id=f"BTCUSDT-{T0 + 10**9}-1"), origin=0)
    pipeline.early.limit = 3
    steps = [pipeline.on_feedback(feedback(predictions[-1], prediction_id=f"BTCUSDT-{T0 + 10**9}-{i}"), origin=i)
             for i in range(2, 6)]
    pushed = [(origin, step.rejection[1]) for s in steps for step, origin in s.released]
    assert pushed == [(0, "unknown_prediction"), (2, "unknown_prediction")] and len(pipeline.early) == 3


def test_a_flood_of_feedback_far_ahead_does_not_push_out_feedback_a_restore_is_about_to_meet():
    """Feedback naming a prediction a little ahead (a restored state will make it again) is held; a flood
    naming times far ahead (a wrong clock, ids from elsewhere) past the limit refuses those, not it.
    Before, the one held longest went first, and the flood pushed the real one out."""
    pipeline, predictions = pipeline_with_predictions(20)
    _, made = pipeline_with_predictions(30)
    real = feedback(made[25], label=0)
    assert pipeline.on_feedback(real, origin="real").rejection is None
    pipeline.early.limit = 50
    flood = [pipeline.on_feedback(feedback(predictions[-1], prediction_id=f"BTCUSDT-{T0 + 10**9 + i}-1"), origin=i)
             for i in range(200)]
    pushed = [origin for step in flood for _, origin in step.released]
    assert "real" not in pushed and len(pushed) == 151 and len(pipeline.early) == 50
    released = [pair for tick in _ticks(20, 30) for pair in pipeline.on_tick(tick).released]
    assert [(step.rejection, step.stats.feedback_learned, origin) for step, origin in released] == [
        (None, True, "real")]


def test_feedback_keyed_to_its_partition_for_a_symbol_without_a_learner_yet_is_held_until_its_prediction():
    """A worker killed before its partition's first checkpoint is succeeded by one that starts over and
    makes the same predictions again; feedback answering one may come before the symbol's first tick,
    when the partition has no learner for it. Routed here by the symbol's key (the agent checks it), it
    is held and learned once its prediction is made; otherwise it is refused at once, as feedback keyed
    to the wrong partition most likely is. Before, it was refused either way and never learned."""
    _, made = pipeline_with_predictions(30)
    answer = feedback(made[25], label=0)
    fresh = PartitionPipeline(PipelineConfig(learner=LearnerConfig(members=("logreg", "micro"), horizon_ticks=5),
                                             gate=GateConfig(min_ahead_ms=3_000)))
    refused = fresh.on_feedback(answer, origin="elsewhere")
    assert refused.rejection[1] == "unknown_prediction" and "no model for symbol" in refused.rejection[2]
    held = fresh.on_feedback(answer, origin="feedback@3", routed=True)
    assert held.rejection is None and held.stats.model_events == ["FEEDBACK_HELD"] and len(fresh.early) == 1
    # A misspelt symbol: held too, and refused once a prediction of the partition is made more than the
    # gate's bound on another feed's lead (3 s here) after the time it names.
    misspelt = {**answer, "symbol": "BTCUSDX", "prediction_id": f"BTCUSDX-{T0 + 5000}-6"}
    assert fresh.on_feedback(misspelt, origin="feedback@4", routed=True).rejection is None
    released = [(i, pair) for i, tick in enumerate(_ticks(0, 30)) for pair in fresh.on_tick(tick).released]
    assert [(i, step.rejection and step.rejection[:2], step.stats.feedback_learned, origin)
            for i, (step, origin) in released] == [(9, ("learn", "unknown_prediction"), False, "feedback@4"),
                                                  (25, None, True, "feedback@3")]
    assert "no tick of its symbol came in this partition within 3000 ms" in released[0][1][0].rejection[2]
    unnamed = fresh.on_feedback({**answer, "symbol": "ETHUSDT", "prediction_id": "garbage"}, routed=True)
    assert unnamed.rejection[1] == "unknown_prediction"  # no time to hold it for: refused at once


def test_feedback_for_a_symbol_whose_first_tick_comes_after_another_feeds_later_ticks_is_still_learned():
    """The symbols of a partition come from different feeds: a successor that starts over may meet
    another symbol's ticks a few seconds ahead before the first tick of the symbol the held feedback
    names. Before, the first of those later predictions refused the feedback as having no tick of its
    symbol, a moment before its prediction was made again; now a symbol may lag the partition's stream
    by the tick gate's bound (which accepts the other symbol that far ahead) before its feedback is
    refused."""
    def config() -> PipelineConfig:
        return PipelineConfig(learner=LearnerConfig(members=("logreg", "micro"), horizon_ticks=5))

    def other(i: int) -> dict:
        return make_tick("ETHUSDT", "TRADE", T0 + i * 1000, 2000.0 + (i * 3 % 7), 1.0, is_buyer_maker=i % 2 == 0)

    _, made = pipeline_with_predictions(30)
    answer = feedback(made[2], label=0)
    fresh = PartitionPipeline(config())
    assert fresh.on_feedback(answer, origin="feedback@0", routed=True).rejection is None
    released = [pair for i in range(5, 15) for pair in fresh.on_tick(other(i)).released]
    assert released == [] and len(fresh.early) == 1
    released = [pair for tick in _ticks(0, 30) for pair in fresh.on_tick(tick).released]
    assert [(step.rejection, step.stats.feedback_learned, origin) for step, origin in released] == [
        (None, True, "feedback@0")]
    # The same feedback learned right after its prediction, with the other feed in between as well.
    reference = PartitionPipeline(config())
    for i in range(5, 15):
        reference.on_tick(other(i))
    for i, tick in enumerate(_ticks(0, 30)):
        reference.on_tick(tick)
        if i == 2:
            assert reference.on_feedback(answer).stats.feedback_learned
    assert snapshots.dumps(reference.learners["BTCUSDT"]) == snapshots.dumps(fresh.learners["BTCUSDT"])
