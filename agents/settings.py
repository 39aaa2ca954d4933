"""The one settings object, read from environment variables.

Every knob of the running system is a field here with its environment name, its default and a one-line
meaning, as text: the environment contract (the README's configuration table, ``livelearn config``,
what a subprocess is given). The code reads the values through the typed sections of
:mod:`agents.sections` (``settings.kafka``, ``.local_broker``, ``.binance``, ``.worker``, ``.ticks``,
``.learning``, ``.drift``), all parsed and validated in :meth:`Settings.from_env`. Nothing else in the
code base reads the environment.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from agents.sections import (
    SECTIONS,
    BinanceSection,
    DriftSection,
    KafkaSection,
    LearningSection,
    LocalBrokerSection,
    Section,
    TicksSection,
    WorkerSection,
    parse_section,
    section_of,
)


def _env(name: str, default: str, doc: str):
    return field(default=default, metadata={"env": name, "doc": doc})


@dataclass(frozen=True)
class Settings:
    # Broker and client connection.
    bootstrap_servers: str = _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka bootstrap servers (host:port,...)")
    security_protocol: str = _env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: str = _env("KAFKA_SASL_MECHANISM", "", "SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
    sasl_username: str = _env("KAFKA_SASL_USERNAME", "", "SASL user name")
    sasl_password: str = _env("KAFKA_SASL_PASSWORD", "", "SASL password (secret)")
    ssl_ca_location: str = _env(
        "KAFKA_SSL_CA_LOCATION", "", "PEM file of the CA(s) that sign the brokers' certificates; empty = system CAs"
    )
    ssl_certificate_location: str = _env(
        "KAFKA_SSL_CERTIFICATE_LOCATION", "", "PEM client certificate (mutual TLS); empty = none"
    )
    ssl_key_location: str = _env("KAFKA_SSL_KEY_LOCATION", "", "PEM private key of the client certificate")
    ssl_key_password: str = _env("KAFKA_SSL_KEY_PASSWORD", "", "Password of an encrypted client key (secret)")
    schema_registry_url: str = _env(
        "SCHEMA_REGISTRY_URL", "", "Confluent Schema Registry URL; empty = registry-free single-object Avro"
    )
    # Topics.
    topic_prefix: str = _env("LIVELEARN_TOPIC_PREFIX", "livelearn.", "Prefix of every topic name")
    partitions: str = _env("LIVELEARN_PARTITIONS", "4", "Partitions of each data topic (key = symbol)")
    retention_ms: str = _env(
        "LIVELEARN_RETENTION_MS", "-1",
        "Retention of data topics in ms; -1 keeps all (replayed history has years-old event-time timestamps)",
    )
    replication_factor: str = _env("LIVELEARN_REPLICATION_FACTOR", "1", "Replication factor of created topics")
    # Binance connectors (live feed, history download).
    binance_rest_url: str = _env(
        "LIVELEARN_BINANCE_REST_URL", "", "Binance REST base (<url>/api, /fapi, /dapi); empty = api.binance.com (spot), fapi.binance.com (USD-M), dapi.binance.com (COIN-M)"
    )
    binance_ws_url: str = _env(
        "LIVELEARN_BINANCE_WS_URL", "", "Binance websocket base; empty = stream.binance.com:9443, fstream.binance.com (USD-M) or dstream.binance.com (COIN-M)"
    )
    live_stall_seconds: str = _env(
        "LIVELEARN_LIVE_STALL_SECONDS", "30", "Live feed reconnects when event time has not advanced for this long"
    )
    # Worker.
    app_id: str = _env("LIVELEARN_APP_ID", "livelearn", "Faust application id (consumer group)")
    web_port: str = _env("LIVELEARN_WEB_PORT", "6066", "Worker HTTP port: /metrics, /healthz, /readyz")
    web_bind: str = _env(
        "LIVELEARN_WEB_BIND", "127.0.0.1",
        "Address the worker's HTTP server binds (0.0.0.0 to let Prometheus in another container scrape it)",
    )
    checkpoint_key: str = _env(
        "LIVELEARN_CHECKPOINT_KEY", "",
        "HMAC-SHA256 key that signs and verifies checkpoint records (secret); empty = LIVELEARN_CHECKPOINT_KEY_FILE",
    )
    checkpoint_key_file: str = _env(
        "LIVELEARN_CHECKPOINT_KEY_FILE", "",
        "File holding the checkpoint key; empty = <home>/checkpoint.key, created (mode 600) on first use",
    )
    state_dir: str = _env("LIVELEARN_STATE_DIR", "", "Worker state (snapshots); empty = <home>/state/<app id>")
    log_level: str = _env("LIVELEARN_LOG_LEVEL", "info", "Worker log level")
    model_checkpoint_events: str = _env(
        "LIVELEARN_MODEL_CHECKPOINT_EVENTS", "5000", "Model checkpoint (and input ack) at least every this many vectors"
    )
    checkpoint_part_bytes: str = _env(
        "LIVELEARN_CHECKPOINT_PART_BYTES", str(4 * 1024 * 1024),
        "Largest checkpoint record (compressed state bytes); a larger state is split into several records",
    )
    model_checkpoint_seconds: str = _env(
        "LIVELEARN_MODEL_CHECKPOINT_SECONDS", "5", "Model checkpoint at least this often while vectors arrive"
    )
    processing_guarantee: str = _env(
        "LIVELEARN_PROCESSING_GUARANTEE", "at_least_once",
        "at_least_once (outputs visible at once; a crash repeats those since the last checkpoint, byte-identical) or "
        "exactly_once (outputs and checkpoint in one Kafka transaction per partition; visible to read_committed "
        "consumers at each checkpoint)",
    )
    transaction_timeout: str = _env(
        "LIVELEARN_TRANSACTION_TIMEOUT_S", "300",
        "exactly_once: a transaction not committed within this is aborted by the broker (a longer broker outage "
        "restarts the worker from its last committed checkpoint); at least twice LIVELEARN_MODEL_CHECKPOINT_SECONDS "
        "and at most the brokers' transaction.max.timeout.ms (15 min by default), both checked at start",
    )
    output_linger_ms: str = _env(
        "LIVELEARN_OUTPUT_LINGER_MS", "0",
        "How long the worker's output producer waits to batch records (librdkafka linger.ms): lower is sooner, higher batches more",
    )
    input_fetch_wait: str = _env(
        "LIVELEARN_INPUT_FETCH_WAIT_MS", "10",
        "Longest the broker holds the worker's fetch of input topics with nothing new (aiokafka fetch_max_wait_ms): "
        "a worker behind after a burst stays about this much behind (Faust's 1500: 1-1.6 s); an idle worker "
        "fetches once per hold",
    )
    stop_timeout: str = _env(
        "LIVELEARN_STOP_TIMEOUT_S", "10",
        "On SIGTERM/SIGINT or a revocation, at most this long to checkpoint the partitions given up (then exit); "
        "a stop still running 20 s after that exits 1",
    )
    broker_probe: str = _env(
        "LIVELEARN_BROKER_PROBE_S", "5",
        "Every this many seconds the worker asks the broker for metadata; not ready (/readyz 503) while it gets no "
        "answer, even with nothing to publish (0: no probe)",
    )
    metadata_refresh: str = _env(
        "LIVELEARN_METADATA_REFRESH_S", "30",
        "Every this many seconds the worker's consumer and every producer ask for the topics' metadata again: "
        "within this, an input topic grown while they run is seen (and checked) and keys go by its new partition "
        "count (Kafka's default is 300)",
    )
    # Local broker managed by `livelearn kafka`.
    home: str = _env("LIVELEARN_HOME", "~/.cache/livelearn", "Cache for broker jars, broker data and run state")
    kafka_version: str = _env("LIVELEARN_KAFKA_VERSION", "3.9.1", "Apache Kafka version fetched from Maven Central")
    kafka_port: str = _env("LIVELEARN_KAFKA_PORT", "9092", "Local broker client port on 127.0.0.1")
    kafka_controller_port: str = _env("LIVELEARN_KAFKA_CONTROLLER_PORT", "9093", "Local broker KRaft controller port")
    kafka_heap: str = _env("LIVELEARN_KAFKA_HEAP", "512m", "Local broker JVM heap (-Xmx)")
    # Learning and drift.
    horizon_ticks: str = _env("LIVELEARN_HORIZON_TICKS", "5", "Outcome horizon H in ticks of the same symbol")
    horizon_seconds: str = _env(
        "LIVELEARN_HORIZON_SECONDS", "0", "Outcome horizon in event-time seconds instead of ticks; 0 = use HORIZON_TICKS"
    )
    flat_band: str = _env("LIVELEARN_FLAT_BAND", "0.0", "Dead band: a realised return within +-band is 'flat' (published, not learned)")
    label: str = _env(
        "LIVELEARN_LABEL", "horizon",
        "Outcome: horizon (reference price after the horizon) or next_change (direction of the next change of the "
        "reference price); the reference price is the mid when the symbol has book quotes, else the trade/kline price",
    )
    predict_on: str = _env(
        "LIVELEARN_PREDICT_ON", "price",
        "Ticks that produce a feature vector and a prediction: price (trades, klines), book (book tickers) or all",
    )
    late_grace_ms: str = _env("LIVELEARN_LATE_GRACE_MS", "0", "Ticks up to this much older than the last are applied at the last time; older are dead-lettered")
    reorder_ms: str = _env(
        "LIVELEARN_REORDER_MS", "0",
        "Ticks held this long in event time and applied in event-time order (0 = as they arrive; latency = this)",
    )
    gate: str = _env("LIVELEARN_GATE", "on", "Tick gate before the features: future, implausible, duplicate and conflicting ticks are dead-lettered (on/off)")
    gate_max_ahead_ms: str = _env(
        "LIVELEARN_GATE_MAX_AHEAD_MS", "600000",
        "A tick further ahead of its partition's stream than max(this, 20 x the symbol's typical gap) is future_event",
    )
    gate_clock_ahead_ms: str = _env(
        "LIVELEARN_GATE_CLOCK_AHEAD_MS", "300000", "A tick further ahead of this machine's clock than this is future_event"
    )
    gate_jump_floor: str = _env(
        "LIVELEARN_GATE_JUMP_FLOOR", "0.10",
        "A price whose log change from the last accepted one exceeds max(this, GATE_JUMP_SIGMAS x its EWMA rms) is implausible_value",
    )
    gate_jump_sigmas: str = _env(
        "LIVELEARN_GATE_JUMP_SIGMAS", "50", "Jump bound in recent standard deviations (refuses a genuine tick at most 1/k^2 of the time)"
    )
    gate_confirm: str = _env(
        "LIVELEARN_GATE_CONFIRM", "3", "Consecutive agreeing ticks that confirm a new price level or time line (the earlier ones are dead-lettered)"
    )
    drift_window: str = _env("LIVELEARN_DRIFT_WINDOW", "500", "Events in each drift reference window")
    drift_current_window: str = _env(
        "LIVELEARN_DRIFT_CURRENT_WINDOW", "100", "Most recent events compared with the reference (capped at the reference window)"
    )
    drift_check_every: str = _env("LIVELEARN_DRIFT_CHECK_EVERY", "20", "Events between two drift checks of a channel")
    drift_warmup: str = _env("LIVELEARN_DRIFT_WARMUP", "500", "Events per symbol and channel ignored before the reference window")
    drift_alpha: str = _env("LIVELEARN_DRIFT_ALPHA", "0.0008", "Family-wise alarm level per drift check (0.0008 every 20 events: at most 0.4 false alarms per 10k events and channel)")
    drift_correction: str = _env("LIVELEARN_DRIFT_CORRECTION", "bonferroni", "Multiple testing: bonferroni or bh")
    drift_features: str = _env("LIVELEARN_DRIFT_FEATURES", "", "Comma-separated features under drift tests; empty = all stationary model features")
    drift_volatility_half_life: str = _env(
        "LIVELEARN_DRIFT_VOLATILITY_HALF_LIFE", "0",
        "Events: return-like drift features divided by their recent volatility (EWMA of abs(ret_1) with this half-life); 0 = raw",
    )
    drift_seasonal_buckets: str = _env(
        "LIVELEARN_DRIFT_SEASONAL_BUCKETS", "24",
        "Time-of-day buckets (UTC) of the intraday volatility profile: return-like drift features divided by their usual "
        "size at that time of day, learnt from complete days; 0 = off",
    )
    drift_quiet_spell_hours: str = _env(
        "LIVELEARN_DRIFT_QUIET_SPELL_HOURS", "504",
        "Event-time hours a fall of volatility is remembered: a rise back to the level before it (the end of a weekend) "
        "raises no VARIANCE alert; a quiet level that outlasts it becomes the usual one; 0 = off",
    )
    drift_variance_test: str = _env(
        "LIVELEARN_DRIFT_VARIANCE_TEST", "cusum",
        "VARIANCE channel's test: cusum (a sequential test of ret_1 for a threefold rise, once a symbol has 48 event-time "
        "hours behind it; the windowed test before), volatility (the windowed one-sided test of the return-like features "
        "alone) or levene (every feature); streams without returns get levene",
    )
    drift_cusum_threshold: str = _env(
        "LIVELEARN_DRIFT_CUSUM_THRESHOLD", "50",
        "Alarm level of the cusum variance test, a log-likelihood ratio (50: 0.32 VARIANCE alerts per 10k events on 58 "
        "real months, 40: more bursts found, sooner, more alerts)",
    )
    drift_reference_max_age_hours: str = _env(
        "LIVELEARN_DRIFT_REFERENCE_MAX_AGE_HOURS", "24",
        "Event-time hours a FEATURE, PREDICTION, CONCEPT or BASIS reference serves while no incident is open; then it is "
        "taken again from the latest events (markets wander over days); 0 = until an alert",
    )
    drift_persist_s: str = _env(
        "LIVELEARN_DRIFT_PERSIST_S", "60",
        "Event-time seconds a drift change (any channel but BASIS) must be seen over to open an incident: a rejection whose current "
        "window spans less (ticks) is checked again that long after and fires only if the change is still there (a burst "
        "of seconds does not); one-minute bars are unaffected; 0 = at the first rejection",
    )
    basis_groups: str = _env(
        "LIVELEARN_BASIS_GROUPS", "auto",
        "Pairs of one base asset, keyed alike (one partition) and watched for basis shifts: auto (by base asset and dollar "
        "quote), off, or NAME=SYM,SYM[,...];NAME2=...",
    )
    basis_min_bps: str = _env("LIVELEARN_BASIS_MIN_BPS", "20", "Smallest basis shift (basis points) a BASIS alert reports")
    alert_min_severity: str = _env("LIVELEARN_ALERT_MIN_SEVERITY", "LOW", "Alerts below this severity are tracked, not published")
    members: str = _env("LIVELEARN_MEMBERS", "logreg,mlp,micro,side,imbalance",
                        "Ensemble members (logreg, mlp, micro, side, imbalance, hat, arf); the no-skill references "
                        "are always in it")
    challengers: str = _env(
        "LIVELEARN_CHALLENGERS", "",
        "Challenger variants, name=member+member;... e.g. fast=logreg@0.05;tree=hat (empty = none)",
    )
    traffic_share: str = _env(
        "LIVELEARN_TRAFFIC_SHARE", "0", "Share of predictions served by a challenger (hash of the id); 0 = shadow only"
    )
    promotion_alpha: str = _env(
        "LIVELEARN_PROMOTION_ALPHA", "0.01", "False-promotion (and false-rollback) rate bound of the sequential test"
    )
    promotion_min_samples: str = _env(
        "LIVELEARN_PROMOTION_MIN_SAMPLES", "200", "Paired outcomes before a promotion or rollback may be decided"
    )
    rollback_margin: str = _env(
        "LIVELEARN_ROLLBACK_MARGIN", "0.02", "Rollback when a promoted model's Brier loss exceeds the previous one's by this"
    )
    rollback_threshold: str = _env(
        "LIVELEARN_ROLLBACK_THRESHOLD", "10000",
        "Rollback detector threshold; false rollbacks come on average no sooner than this many outcomes",
    )
    guard_updates: str = _env(
        "LIVELEARN_GUARD_UPDATES", "on", "on: learning steps that corrupt a member are undone (see streams/guard.py)"
    )
    torch_device: str = _env(
        "LIVELEARN_TORCH_DEVICE", "cpu", "Device of torch members: cpu, cuda, or auto (cuda when available)"
    )
    ensemble_start: str = _env(
        "LIVELEARN_ENSEMBLE_START", "auto",
        "The ensemble's initial weights: markets (constant 0.6, prior 0.3, fast mixture 0.08), datasets (0.28, "
        "0.06, 0.6) or auto (datasets for labelled datasets' vectors, markets for the feature engine's)",
    )
    skill_gate_alpha: str = _env(
        "LIVELEARN_SKILL_GATE_ALPHA", "0.01",
        "Market forecasts stay 0.5 until the members show skill at this level (anytime-valid test, "
        "streams/skill_gate.py); 0 = off",
    )
    regime_weights: str = _env(
        "LIVELEARN_REGIME_WEIGHTS", "off", "on: ensemble weights per market regime (trending/ranging/volatile)"
    )
    drift_response: str = _env(
        "LIVELEARN_DRIFT_RESPONSE", "on", "off: concept-drift alerts are published but models are left as they are"
    )
    performance_every: str = _env(
        "LIVELEARN_PERFORMANCE_EVERY", "500", "Labelled outcomes per symbol between performance records"
    )
    seed: str = _env("LIVELEARN_SEED", "42", "Seed of every model's random state")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source: Mapping[str, str] = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in source:
                values[f.name] = source[name]
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Every section parses; raises one ValueError naming each bad variable (checked once, at
        start, so a typo fails there and not at the first event that reads it)."""
        problems: list[str] = []
        for cls in SECTIONS.values():
            parse_section(cls, self, problems)
        if problems:
            raise ValueError("bad settings: " + "; ".join(problems))

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name -> environment variable."""
        return {f.name: f.metadata["env"] for f in fields(cls)}

    # The typed sections (agents.sections), parsed on first use; from_env has parsed them all.
    kafka = Section(KafkaSection)
    local_broker = Section(LocalBrokerSection)
    binance = Section(BinanceSection)
    worker = Section(WorkerSection)
    ticks = Section(TicksSection)
    learning = Section(LearningSection)
    drift = Section(DriftSection)

    def as_env(self) -> dict[str, str]:
        return {f.metadata["env"]: getattr(self, f.name) for f in fields(self)}

    def masked_env(self) -> dict[str, str]:
        """``as_env`` with every secret that is set shown as ``****`` (for printing and logs)."""
        return {env: ("****" if value and env in SECRETS else value) for env, value in self.as_env().items()}

    def partition_key(self, symbol: str) -> str:
        """The Kafka key of a symbol's ticks and feedback (schemas.keys)."""
        return self.drift.basis_groups.key(symbol)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else self.local_broker.home / "state" / self.app_id

    def topic(self, stage: str) -> str:
        return f"{self.topic_prefix}{stage}"

    @property
    def protocol(self) -> str:
        """KAFKA_SECURITY_PROTOCOL, validated (with the SASL and TLS settings it needs)."""
        protocol = self.kafka.security_protocol
        if protocol.startswith("SASL"):
            if self.sasl_mechanism.strip().upper() not in SASL_MECHANISMS:
                raise ValueError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)} with "
                                 f"{protocol}, got {self.sasl_mechanism!r}")
            if not self.sasl_username:
                raise ValueError(f"KAFKA_SASL_USERNAME is required with {protocol}")
        if protocol.endswith("SSL"):
            for env, path in (("KAFKA_SSL_CA_LOCATION", self.ssl_ca_location),
                              ("KAFKA_SSL_CERTIFICATE_LOCATION", self.ssl_certificate_location),
                              ("KAFKA_SSL_KEY_LOCATION", self.ssl_key_location)):
                if path and not Path(path).is_file():
                    raise ValueError(f"{env}: no such file {path!r}")
            if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
                raise ValueError("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together")
        return protocol

    def client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection settings, TLS and SASL included, and the metadata refresh
        of ``LIVELEARN_METADATA_REFRESH_S``: a producer keeps placing keys by the partition count it last
        asked for, so with librdkafka's default (five minutes) a connector went on sending a group's ticks
        to its old partition that long after the input topics grew, while the worker's consumer saw the
        growth within the setting."""
        protocol = self.protocol
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": protocol,
                  "topic.metadata.refresh.interval.ms": str(round(self.worker.metadata_refresh_s * 1000))}
        if protocol.startswith("SASL"):
            config.update({"sasl.mechanisms": self.sasl_mechanism.strip().upper(),
                           "sasl.username": self.sasl_username, "sasl.password": self.sasl_password})
        if protocol.endswith("SSL"):
            for key, value in (("ssl.ca.location", self.ssl_ca_location),
                               ("ssl.certificate.location", self.ssl_certificate_location),
                               ("ssl.key.location", self.ssl_key_location),
                               ("ssl.key.password", self.ssl_key_password)):
                if value:
                    config[key] = value
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The same TLS settings as an ``ssl.SSLContext`` (what aiokafka, so Faust, takes); None
        without TLS. Certificates and host names are verified."""
        if not self.protocol.endswith("SSL"):
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca_location or None)
        if self.ssl_certificate_location:
            context.load_cert_chain(self.ssl_certificate_location, self.ssl_key_location,
                                    password=self.ssl_key_password or None)
        return context

    @property
    def checkpoint_key_path(self) -> Path:
        return Path(self.checkpoint_key_file).expanduser() if self.checkpoint_key_file else (
            self.local_broker.home / "checkpoint.key")


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Printed as **** by `livelearn config` and never logged.
SECRETS = frozenset({"KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD", "LIVELEARN_CHECKPOINT_KEY"})


def settings_table() -> list[tuple[str, str, str, str]]:
    """(section, environment variable, default, meaning) for every setting, by section."""
    section = section_of()
    rows = [(section[f.name], f.metadata["env"], str(f.default), f.metadata["doc"]) for f in fields(Settings)]
    order = list(SECTIONS)
    return sorted(rows, key=lambda row: order.index(row[0]))
