"""The settings: one environment contract, read through typed sections parsed once."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from agents.sections import SECTIONS, section_of
from agents.settings import Settings, settings_table


def test_every_variable_belongs_to_exactly_one_section():
    sources = [f.metadata["source"] for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert sorted(sources) == sorted(f.name for f in dataclasses.fields(Settings))
    assert len(sources) == len(set(sources))
    assert [row[0] for row in settings_table()] == sorted(section_of().values(), key=list(SECTIONS).index)


def test_sections_hold_typed_values_of_the_defaults():
    s = Settings.from_env({})
    for name, cls in SECTIONS.items():
        section = getattr(s, name)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            value = getattr(section, f.name)
            kind = typing.get_origin(hints[f.name]) or hints[f.name]
            assert isinstance(value, kind), (name, f.name, value)
    assert s.kafka.partitions == 4 and s.learning.members == ("logreg", "mlp", "micro", "side", "imbalance")
    assert s.ticks.gate is True and s.learning.regime_weights is False
    assert s.local_broker.home == Path("~/.cache/livelearn").expanduser()
    assert not s.worker.exactly_once


def test_values_are_parsed_and_choices_normalised():
    s = Settings.from_env({"LIVELEARN_CHALLENGERS": "fast=logreg@0.05;tree=hat+logreg", "LIVELEARN_LABEL": "Next_Change",
                           "LIVELEARN_ALERT_MIN_SEVERITY": "high", "LIVELEARN_DRIFT_FEATURES": " ret_1, rsi_14 ,",
                           "LIVELEARN_PROCESSING_GUARANTEE": "EXACTLY_ONCE", "LIVELEARN_GATE": "no"})
    assert s.learning.challengers == (("fast", ("logreg@0.05",)), ("tree", ("hat", "logreg")))
    assert s.learning.label == "next_change" and s.drift.alert_min_severity == "HIGH"
    assert s.drift.features == ("ret_1", "rsi_14") and s.worker.exactly_once and s.ticks.gate is False


def test_every_bad_value_is_named_once_at_start():
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"LIVELEARN_DRIFT_WINDOW": "5", "LIVELEARN_GATE": "maybe", "LIVELEARN_SEED": "1.5",
                           "LIVELEARN_CHALLENGERS": "nameless", "LIVELEARN_TORCH_DEVICE": "tpu",
                           "LIVELEARN_DRIFT_SEASONAL_BUCKETS": "7"})
    message = str(caught.value)
    for expected in ("LIVELEARN_DRIFT_WINDOW must be >= 10, got '5'", "LIVELEARN_GATE must be on or off, got 'maybe'",
                     "LIVELEARN_SEED must be an integer, got '1.5'", "LIVELEARN_CHALLENGERS: 'nameless' is not name=",
                     "LIVELEARN_TORCH_DEVICE must be one of cpu, cuda, auto, got 'tpu'",
                     "LIVELEARN_DRIFT_SEASONAL_BUCKETS: must be 0 (off) or a number of buckets that divides a day"):
        assert expected in message


@pytest.mark.parametrize("value", ["abc", "-1", "0", "1e400", "nan", "", "999999999999999999999", "1,2", "-0.5"])
def test_no_value_of_any_setting_gets_past_the_start_unnamed(value):
    """Every variable, each of these values: either it is taken, and the pipeline is built from it, or
    the error names the variable (LIVELEARN_DRIFT_ALPHA=2 once came out as 'alpha must be in (0, 1)',
    from deep inside the drift configuration)."""
    from agents.app import pipeline_config

    for f in dataclasses.fields(Settings):
        env = f.metadata["env"]
        try:
            pipeline_config(Settings.from_env({env: value}))
        except ValueError as exc:
            assert env in str(exc), (env, value, str(exc))


def test_a_replaced_setting_is_read_through_its_section():
    base = Settings.from_env({})
    assert base.kafka.partitions == 4
    assert dataclasses.replace(base, partitions="1").kafka.partitions == 1


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_a_bounded_number_setting_refuses_what_is_not_finite(value):
    """NaN passes every lower bound (a comparison with it is false), and no setting means anything by infinity."""
    for env in ("LIVELEARN_DRIFT_PERSIST_S", "LIVELEARN_DRIFT_QUIET_SPELL_HOURS", "LIVELEARN_STOP_TIMEOUT_S"):
        with pytest.raises(ValueError, match=f"{env} must be a finite number"):
            Settings.from_env({env: value})
