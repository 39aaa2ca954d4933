"""The settings as typed sections: what the code reads.

:class:`agents.settings.Settings` is the environment contract: one text field per variable, its name,
default and meaning (the README's table), what a subprocess is given back (``as_env``). The code reads
its values through the sections here instead (``settings.kafka.partitions`` is an ``int``,
``settings.learning.members`` a tuple, ``settings.ticks.gate`` a ``bool``), each parsed once, when
the settings are made, so a bad value fails at start with its variable's name and never as a cast
at the first event that reads it.

Sections follow the data flow and the operator's view: the Kafka connection and topics, the local
broker that ``livelearn kafka`` runs, the Binance connectors, the worker process, the tick gate and
event-time handling, learning, and drift. Every environment variable belongs to exactly one section
(a unit test checks it).

>>> from agents.settings import Settings
>>> s = Settings(partitions="8", members="logreg, hat", gate="off")
>>> s.kafka.partitions, s.learning.members, s.ticks.gate
(8, ('logreg', 'hat'), False)
>>> Settings(drift_window="x").drift
Traceback (most recent call last):
...
ValueError: LIVELEARN_DRIFT_WINDOW must be an integer, got 'x'
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from schemas.keys import BasisGroups

SWITCH_ON = ("on", "true", "1", "yes")
SWITCH_OFF = ("off", "false", "0", "no")


def _from(source: str, low: float | None = None, choices: tuple[str, ...] = (),
          parse: Callable[[str], Any] | None = None) -> Any:
    """A section field read from the Settings field ``source`` (its environment variable), with an
    optional lower bound, a closed set of choices (matched without regard to case, stored as listed)
    or a parser of its own."""
    return field(metadata={"source": source, "low": low, "choices": choices, "parse": parse})


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# streams.models.MEMBER_NAMES and persistence, not imported for the reason given in _day_buckets (a
# unit test keeps the two equal).
MEMBERS = ("persistence", "logreg", "mlp", "micro", "side", "imbalance", "hat", "arf")


def _members(text: str) -> tuple[str, ...]:
    """Member names, ``logreg@<rate>`` included; a typo fails at start (``livelearn config`` too),
    not when the worker builds its first learner."""
    names = _names(text)
    for name in names:
        base, at, rate = name.partition("@")
        if base not in MEMBERS or (at and base != "logreg"):
            raise ValueError(f"unknown member {name!r}; choose from {', '.join(MEMBERS)} (or logreg@<rate>)")
        if at:
            try:
                ok = 0.0 < float(rate) < float("inf")
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"bad learning rate in member {name!r}; write e.g. logreg@0.05")
    return names


def _number_where(text: str, rule: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {text!r}") from None
    if not ok(value):  # NaN fails every rule
        raise ValueError(f"must be {rule}, got {text!r}")
    return value


def _gate_alpha(text: str) -> float:
    """The skill gate's level: 0 (off) or a probability below 1."""
    return _number_where(text, "0 (off) or in (0, 1)", lambda a: 0.0 <= a < 1.0)


def _probability(text: str) -> float:
    """A test's level: strictly between 0 and 1."""
    return _number_where(text, "in (0, 1)", lambda a: 0.0 < a < 1.0)


def _positive(text: str) -> float:
    """A level that must be above zero (the CUSUM's threshold)."""
    return _number_where(text, "> 0", lambda a: a > 0.0 and a != float("inf"))


def _share(text: str) -> float:
    """A share of traffic: from 0 to 1."""
    return _number_where(text, "in [0, 1]", lambda a: 0.0 <= a <= 1.0)


def _day_buckets(text: str) -> int:
    """Time-of-day buckets of the intraday profile: 0 (off) or a count that divides a day evenly."""
    # The rule of streams.drift.seasonality.check_buckets, not imported: importing streams.drift loads
    # numpy and scipy, which every command would then pay for at start.
    try:
        buckets = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number, got {text!r}") from None
    if buckets and (not 1 <= buckets <= 1440 or 86_400_000 % buckets):
        raise ValueError(f"must be 0 (off) or a number of buckets that divides a day evenly (24: hours, 48: half "
                         f"hours, 96: quarters ...), got {text!r}")
    return buckets


def _challengers(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``name=member+member;...`` -> ((name, members), ...)."""
    out: dict[str, tuple[str, ...]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, members = part.partition("=")
        names = _members(members.replace("+", ","))
        if not sep or not name.strip() or not names:
            raise ValueError(f"{part.strip()!r} is not name=member+member")
        out[name.strip()] = names
    return tuple(out.items())


def _path(text: str) -> Path:
    return Path(os.path.expanduser(text))


@dataclass(frozen=True)
class KafkaSection:
    """Brokers, client security and topics."""

    bootstrap_servers: str = _from("bootstrap_servers")
    security_protocol: str = _from("security_protocol",
                                   choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    sasl_mechanism: str = _from("sasl_mechanism")
    sasl_username: str = _from("sasl_username")
    sasl_password: str = _from("sasl_password")
    ssl_ca_location: str = _from("ssl_ca_location")
    ssl_certificate_location: str = _from("ssl_certificate_location")
    ssl_key_location: str = _from("ssl_key_location")
    ssl_key_password: str = _from("ssl_key_password")
    schema_registry_url: str = _from("schema_registry_url")
    topic_prefix: str = _from("topic_prefix")
    partitions: int = _from("partitions", low=1)
    retention_ms: int = _from("retention_ms")
    replication_factor: int = _from("replication_factor", low=1)


@dataclass(frozen=True)
class LocalBrokerSection:
    """The single-node broker ``livelearn kafka`` fetches and runs, and this project's cache."""

    home: Path = _from("home", parse=_path)
    kafka_version: str = _from("kafka_version")
    kafka_port: int = _from("kafka_port", low=1)
    kafka_controller_port: int = _from("kafka_controller_port", low=1)
    kafka_heap: str = _from("kafka_heap")


@dataclass(frozen=True)
class BinanceSection:
    """The live feed and the history download."""

    rest_url: str = _from("binance_rest_url")
    ws_url: str = _from("binance_ws_url")
    live_stall_seconds: float = _from("live_stall_seconds", low=0)


@dataclass(frozen=True)
class WorkerSection:
    """The worker process: identity, HTTP endpoint, checkpoints, guarantees, stops."""

    app_id: str = _from("app_id")
    web_port: int = _from("web_port", low=0)
    web_bind: str = _from("web_bind")
    checkpoint_key: str = _from("checkpoint_key")
    checkpoint_key_file: str = _from("checkpoint_key_file")
    state_dir: str = _from("state_dir")
    log_level: str = _from("log_level", choices=("debug", "info", "warning", "error", "critical"))
    checkpoint_events: int = _from("model_checkpoint_events", low=1)
    checkpoint_seconds: float = _from("model_checkpoint_seconds", low=0)
    checkpoint_part_bytes: int = _from("checkpoint_part_bytes", low=1024)
    processing_guarantee: str = _from("processing_guarantee", choices=("at_least_once", "exactly_once"))
    transaction_timeout_s: float = _from("transaction_timeout", low=1)
    stop_timeout_s: float = _from("stop_timeout", low=0)
    output_linger_ms: float = _from("output_linger_ms", low=0)
    input_fetch_wait_ms: float = _from("input_fetch_wait", low=1)
    broker_probe_s: float = _from("broker_probe", low=0)
    metadata_refresh_s: float = _from("metadata_refresh", low=0.1)

    def __post_init__(self) -> None:
        # A transaction stays open from its first output until the checkpoint that commits it: up to
        # one interval plus half of one for the quiet-partition timer (agents.web). The broker aborts a
        # transaction older than its timeout and fences the producer, so a longer interval crashed the
        # worker at its first checkpoint, every time.
        if self.exactly_once and self.transaction_timeout_s < 2 * self.checkpoint_seconds:
            raise ValueError(f"LIVELEARN_TRANSACTION_TIMEOUT_S ({self.transaction_timeout_s:g}) must be at least twice "
                             f"LIVELEARN_MODEL_CHECKPOINT_SECONDS ({self.checkpoint_seconds:g}) with exactly_once: "
                             "the broker aborts a transaction left open longer than its timeout")

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"


@dataclass(frozen=True)
class TicksSection:
    """What becomes a feature vector, and the hygiene before it: late ticks, re-ordering, the gate."""

    predict_on: str = _from("predict_on", choices=("price", "book", "all"))
    late_grace_ms: int = _from("late_grace_ms", low=0)
    reorder_ms: int = _from("reorder_ms", low=0)
    gate: bool = _from("gate")
    gate_max_ahead_ms: int = _from("gate_max_ahead_ms", low=0)
    gate_clock_ahead_ms: int = _from("gate_clock_ahead_ms", low=0)
    gate_jump_floor: float = _from("gate_jump_floor", low=1e-6)
    gate_jump_sigmas: float = _from("gate_jump_sigmas", low=1)
    gate_confirm: int = _from("gate_confirm", low=1)


@dataclass(frozen=True)
class LearningSection:
    """Outcomes, members, the ensemble's guard, challengers and their promotion."""

    horizon_ticks: int = _from("horizon_ticks", low=1)
    horizon_seconds: float = _from("horizon_seconds", low=0)
    flat_band: float = _from("flat_band", low=0)
    label: str = _from("label", choices=("horizon", "next_change"))
    members: tuple[str, ...] = _from("members", parse=_members)
    challengers: tuple[tuple[str, tuple[str, ...]], ...] = _from("challengers", parse=_challengers)
    traffic_share: float = _from("traffic_share", parse=_share)
    promotion_alpha: float = _from("promotion_alpha", parse=_probability)
    promotion_min_samples: int = _from("promotion_min_samples", low=1)
    rollback_margin: float = _from("rollback_margin")
    rollback_threshold: float = _from("rollback_threshold")
    guard_updates: bool = _from("guard_updates")
    torch_device: str = _from("torch_device", choices=("cpu", "cuda", "auto"))
    regime_weights: bool = _from("regime_weights")
    # streams.ensemble.START's keys, not imported (see MEMBERS; a unit test keeps them equal).
    ensemble_start: str = _from("ensemble_start", choices=("auto", "markets", "datasets"))
    skill_gate_alpha: float = _from("skill_gate_alpha", parse=_gate_alpha)
    drift_response: bool = _from("drift_response")
    performance_every: int = _from("performance_every", low=1)
    seed: int = _from("seed")


@dataclass(frozen=True)
class DriftSection:
    """The drift monitor's windows, levels, features and basis groups, and the alerts it publishes."""

    window: int = _from("drift_window", low=10)
    current_window: int = _from("drift_current_window", low=0)
    check_every: int = _from("drift_check_every", low=1)
    warmup: int = _from("drift_warmup", low=0)
    alpha: float = _from("drift_alpha", parse=_probability)
    correction: str = _from("drift_correction", choices=("bonferroni", "bh"))
    features: tuple[str, ...] = _from("drift_features", parse=_names)
    volatility_half_life: float = _from("drift_volatility_half_life", low=0)
    seasonal_buckets: int = _from("drift_seasonal_buckets", parse=_day_buckets)
    quiet_spell_hours: float = _from("drift_quiet_spell_hours", low=0)
    reference_max_age_hours: float = _from("drift_reference_max_age_hours", low=0)
    persist_s: float = _from("drift_persist_s", low=0)
    variance_test: str = _from("drift_variance_test", choices=("volatility", "cusum", "levene"))
    cusum_threshold: float = _from("drift_cusum_threshold", parse=_positive)
    basis_groups: BasisGroups = _from("basis_groups", parse=BasisGroups.parse)
    basis_min_bps: float = _from("basis_min_bps", low=0)
    alert_min_severity: str = _from("alert_min_severity", choices=("LOW", "MEDIUM", "HIGH", "CRITICAL"))


SECTIONS: dict[str, type] = {
    "kafka": KafkaSection, "local_broker": LocalBrokerSection, "binance": BinanceSection,
    "worker": WorkerSection, "ticks": TicksSection, "learning": LearningSection, "drift": DriftSection,
}


def _value(kind: Any, meta: dict[str, Any], raw: str, env: str) -> Any:
    if meta["parse"] is not None:
        try:
            return meta["parse"](raw)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith(env) else f"{env}: {message}") from None
    if meta["choices"]:
        for choice in meta["choices"]:
            if raw.strip().lower() == choice.lower():
                return choice
        raise ValueError(f"{env} must be one of {', '.join(meta['choices'])}, got {raw!r}")
    if kind is bool:
        if raw.strip().lower() in SWITCH_ON:
            return True
        if raw.strip().lower() in SWITCH_OFF:
            return False
        raise ValueError(f"{env} must be on or off, got {raw!r}")
    if kind in (int, float):
        try:
            number = kind(raw)
        except ValueError:
            raise ValueError(f"{env} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
        if not math.isfinite(number):  # NaN passes every bound; no setting means anything by infinity
            raise ValueError(f"{env} must be a finite number, got {raw!r}")
        if meta["low"] is not None and number < meta["low"]:
            raise ValueError(f"{env} must be >= {meta['low']}, got {raw!r}")
        return number
    return raw


def parse_section(cls: type, settings: Any, problems: list[str] | None = None) -> Any:
    """The section ``cls`` of ``settings``; a bad value raises ValueError naming its variable, or,
    with ``problems``, is appended there (the section is then not built: None)."""
    env = settings.env_names()
    hints = typing.get_type_hints(cls)
    values, bad = {}, []
    for f in fields(cls):
        source = f.metadata["source"]
        try:
            values[f.name] = _value(hints[f.name], dict(f.metadata), getattr(settings, source), env[source])
        except ValueError as exc:
            bad.append(str(exc))
    if not bad:
        try:
            return cls(**values)
        except ValueError as exc:  # a rule across the section's variables
            bad.append(str(exc))
    if problems is None:
        raise ValueError("; ".join(bad))
    problems.extend(bad)
    return None


T = TypeVar("T")


class Section(Generic[T]):
    """A typed section as an attribute of the settings, parsed on first read and kept (the settings
    are frozen, so it cannot go stale; ``dataclasses.replace`` makes a new object that parses anew)."""

    def __init__(self, cls: type[T]):
        self.cls = cls
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, settings: None, owner: type) -> Section[T]: ...

    @overload
    def __get__(self, settings: object, owner: type) -> T: ...

    def __get__(self, settings: object | None, owner: type) -> Section[T] | T:
        if settings is None:
            return self
        cache = settings.__dict__
        value = cache.get(self.name)
        if value is None:
            value = cache[self.name] = parse_section(self.cls, settings)
        return value


def section_of() -> dict[str, str]:
    """Settings field -> the section that reads it."""
    return {f.metadata["source"]: name for name, cls in SECTIONS.items() for f in fields(cls)}
