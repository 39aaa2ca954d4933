"""The composition root: everything a worker (or a backtest) builds from the settings, built when asked.

:class:`Runtime` holds the settings, the pipeline configuration, the metrics, one Avro codec per topic,
the librdkafka producer the outputs go through and, for a worker, the Faust app with its topics.
Nothing here runs at import: the worker (agents.worker) and the backtest (agents.backtest) each build
one, and tests build their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from agents.log_throttle import LogThrottle
from agents.metrics import Metrics
from agents.settings import Settings
from agents.topics import FLOW, INPUT_STAGES
from connectors.producer import kafka_timestamp, make_producer
from schemas.codec import make_codec
from schemas.records import dead_letter
from streams.drift import BASIS_CONFIG, DriftConfig
from streams.learning import LearnerConfig
from streams.pipeline import PipelineConfig
from streams.tick_gate import GateConfig

log = logging.getLogger("livelearn")


def pipeline_config(s: Settings) -> PipelineConfig:
    """The partition pipeline's configuration from the settings' learning, ticks and drift sections."""
    learning, ticks, d = s.learning, s.ticks, s.drift
    learner = LearnerConfig(
        members=learning.members, horizon_ticks=learning.horizon_ticks, horizon_seconds=learning.horizon_seconds,
        label=learning.label, flat_band=learning.flat_band, seed=learning.seed, device=learning.torch_device,
        regime_weights=learning.regime_weights, challengers=learning.challengers,
        traffic_share=learning.traffic_share, promotion_alpha=learning.promotion_alpha,
        promotion_min_samples=learning.promotion_min_samples, rollback_margin=learning.rollback_margin,
        rollback_threshold=learning.rollback_threshold, guard=learning.guard_updates,
        ensemble_start=learning.ensemble_start, skill_gate_alpha=learning.skill_gate_alpha)
    drift = DriftConfig(window=d.window, current_window=d.current_window, check_every=d.check_every, alpha=d.alpha,
                        correction=d.correction, min_severity=d.alert_min_severity, warmup_events=d.warmup,
                        volatility_half_life=d.volatility_half_life, seasonal_buckets=d.seasonal_buckets,
                        quiet_spell_hours=d.quiet_spell_hours, reference_max_age_hours=d.reference_max_age_hours,
                        variance_test=d.variance_test, cusum_threshold=d.cusum_threshold,
                        persist_ms=round(d.persist_s * 1000))
    gate = GateConfig(min_ahead_ms=ticks.gate_max_ahead_ms, clock_ahead_ms=ticks.gate_clock_ahead_ms,
                      jump_floor=ticks.gate_jump_floor, jump_sigmas=ticks.gate_jump_sigmas,
                      confirm=ticks.gate_confirm, enabled=ticks.gate)
    groups = d.basis_groups
    basis = None if groups.mode == "off" else dataclasses.replace(
        BASIS_CONFIG, alpha=drift.alpha, correction=drift.correction, basis_min_bps=d.basis_min_bps,
        reference_max_age_hours=d.reference_max_age_hours)
    config = PipelineConfig(learner=learner, drift=drift, drift_response=learning.drift_response,
                            late_grace_ms=ticks.late_grace_ms, reorder_ms=ticks.reorder_ms, gate=gate,
                            emit=ticks.predict_on, performance_every=learning.performance_every, basis=basis,
                            basis_groups=groups)
    if d.features:
        config = PipelineConfig(**{**config.__dict__, "drift_features": d.features})
    return config


def broker_credentials(s: Settings):
    """Faust (aiokafka) credentials for the configured protocol: the TLS settings as an
    ``ssl.SSLContext`` for SSL and SASL_SSL, SASL user and mechanism for the SASL protocols. Without
    them Faust would speak plaintext whatever KAFKA_SECURITY_PROTOCOL says."""
    import faust

    protocol = s.protocol
    context = s.ssl_context()
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                     mechanism=s.sasl_mechanism.strip().upper(), ssl_context=context)
    return None


def faust_app(s: Settings):
    import faust

    from agents.kafka_input import use_short_fetch_wait

    app = faust.App(
        s.app_id,
        broker=[f"kafka://{server}" for server in s.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(s),
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        datadir=str(s.state_path / "faust"),
        topic_partitions=s.kafka.partitions,
        topic_replication_factor=s.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Events are acked at checkpoints; on a stop or a revocation the worker checkpoints what it has
        # applied itself (agents.web), so Faust must not wait for acks of events it cleared unprocessed.
        stream_wait_empty=False,
        processing_guarantee="at_least_once",
        web_port=s.worker.web_port,
        web_bind=s.web_bind,
        producer_linger_ms=1,
        producer_max_request_size=16 * 1024 * 1024,
        broker_commit_every=1000,
        # A killed worker's partitions move after this long (Faust's default of 60 s stalls a restart).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_interval=1.0,
        # An input topic grown while the worker runs splits groups until the consumer's metadata shows it
        # (then the rebalance is checked, agents.web): seconds, not Kafka's five minutes.
        consumer_metadata_max_age_ms=round(s.worker.metadata_refresh_s * 1000),
    )
    use_short_fetch_wait(app, s.worker.input_fetch_wait_ms)
    return app


def false_alarm_bounds(config: PipelineConfig) -> dict[str, float]:
    """Each drift channel's false-alarm bound, alarms per 10k vectors (what
    ``livelearn_drift_false_alarms_per_10k_bound`` exports; BASIS has shorter windows, checked every 5
    events, and a bound of its own, where the channel is on)."""
    bounds = dict.fromkeys(("FEATURE", "VARIANCE", "CONCEPT", "PREDICTION"), config.drift.expected_false_alarms_per_10k)
    if config.basis is not None:
        bounds["BASIS"] = config.basis.expected_false_alarms_per_10k
    return bounds


class Runtime:
    """Settings, pipeline configuration, metrics, codecs and the output producer; with ``faust`` also
    the Faust app and its topics (see the module docstring)."""

    def __init__(self, settings: Settings, faust: bool = True):
        self.settings = settings
        self.pipeline = pipeline_config(settings)
        self.metrics = Metrics()
        # The first dead letters of each stage and reason are logged whole, then a line a minute (log_throttle).
        self.dead_letter_lines = LogThrottle()
        for kind, bound in false_alarm_bounds(self.pipeline).items():
            self.metrics.drift_false_alarm_bound.labels(kind).set(bound)
        self.topic_names = {spec.stage: settings.topic(spec.stage) for spec in FLOW}
        self.codecs = {spec.stage: make_codec(spec.schema, settings.schema_registry_url, self.topic_names[spec.stage],
                                              on_legacy=self.metrics.legacy_avro.labels(spec.stage).inc)
                       for spec in FLOW}
        # Outputs go through librdkafka: Faust's Topic.send costs ~250 µs a record here (profiled), a
        # confluent-kafka produce a few µs. Delivery is confirmed (flush) before the inputs that caused
        # them are acked, at each checkpoint (agents.checkpoints), which keeps at-least-once.
        self._producer = None
        # Exactly-once: one transactional producer per input partition (its transactional id fences a
        # zombie owner of that partition); outputs and the checkpoint commit together (agents.checkpoints).
        self.exactly_once = settings.worker.exactly_once
        self._transactional: dict[int, Any] = {}
        # Partitions whose transaction is being committed: their next events' outputs wait for the next
        # transaction, or they would be committed with a checkpoint that does not include those events.
        self._committing: dict[int, asyncio.Event] = {}
        self._creating: dict[int, asyncio.Lock] = {}
        self.delivery_errors: list[str] = []
        self.ready = False
        self.broker_away_since: float | None = None  # monotonic time outputs stopped being delivered
        self.broker_unanswered_since: float | None = None  # monotonic time the broker stopped answering probes
        self.input_topics = {self.topic_names[stage] for stage in INPUT_STAGES}
        self.app = faust_app(settings) if faust else None
        self.topics = ({spec.stage: self.app.topic(self.topic_names[spec.stage], key_type=bytes, value_type=bytes,
                                                   partitions=settings.kafka.partitions) for spec in FLOW}
                       if self.app is not None else {})

    @property
    def producer(self):
        """The output producer, created on first use (a runtime that publishes nothing connects nowhere)."""
        if self._producer is None:
            # message.timeout.ms 0: a record waits for the broker however long it is away, never dropped.
            self._producer = make_producer(self.settings.client_config(), linger_ms=self.settings.worker.output_linger_ms,
                                           message_timeout_ms=0)
        return self._producer

    def transactional_id(self, partition: int) -> str:
        return f"{self.settings.app_id}-{self.settings.topic_prefix}pipeline-{partition}"

    def producer_for(self, partition: int | None, loop: asyncio.AbstractEventLoop | None = None):
        """The producer for outputs of an input partition: in exactly-once mode its transactional
        producer, with a transaction open (created, fenced-in and begun on first use); else the one
        shared producer."""
        if not self.exactly_once or partition is None or partition < 0:
            return self.producer
        producer = self._transactional.get(partition)
        if producer is None:
            timeout_ms = int(self.settings.worker.transaction_timeout_s * 1000)
            producer = make_producer(self.settings.client_config(), linger_ms=self.settings.worker.output_linger_ms,
                                     transactional_id=self.transactional_id(partition),
                                     transaction_timeout_ms=timeout_ms, message_timeout_ms=timeout_ms)
            # Blocks until an earlier owner's open transaction for this partition is aborted (fencing).
            self._init_transactions(producer, partition, loop)
            producer.begin_transaction()
            self._transactional[partition] = producer
        return producer

    def _init_transactions(self, producer: Any, partition: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``init_transactions`` until it succeeds: a partition assigned while the broker is away, or
        while its transaction coordinator is still loading after a restart, waits like any output
        (librdkafka: a timed-out call is resumed by calling again). It crashed the agent before, and the
        agent Faust restarted then stalled (seen once in the broker outage test). Not on the event loop
        (:meth:`publish` runs this in an executor, passing its ``loop``: once that loop is closed the
        worker has stopped, and a retry would only keep its process alive)."""
        from confluent_kafka import KafkaError, KafkaException

        started = time.monotonic()
        waited = False
        while True:
            try:
                producer.init_transactions(10)
                break
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT:
                    # `livelearn worker` checks this at start; reached only where the brokers' configuration
                    # could not be read then.
                    log.error("the broker refused LIVELEARN_TRANSACTION_TIMEOUT_S=%g: it is longer than the "
                              "broker's transaction.max.timeout.ms", self.settings.worker.transaction_timeout_s)
                if not error.retriable() or (loop is not None and loop.is_closed()):
                    raise
                waited = True
                self._broker_away(started)
                log.warning("transactional producer of partition %s not initialised after %.0f s (%s); retrying",
                            partition, time.monotonic() - started, error.str())
        if waited:
            self._broker_back("transactional producer initialised")

    def assigned_partitions(self) -> set[int]:
        """The input partition numbers the worker's consumer owns now (none without Faust, or before the
        consumer has started)."""
        if self.app is None:
            return set()
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # not started yet
            return set()
        return {tp.partition for tp in assignment if tp.topic in self.input_topics}

    async def fence(self, partitions: set[int]) -> None:
        """Exactly-once: make the transactional producers of these input partitions now, each fencing its
        previous owner (a killed or cut-off worker): its open transaction is aborted and it can commit
        nothing more. A checkpoint restore does this before it reads (agents.checkpoints). Not on the
        loop (init_transactions waits for the broker), and once per partition (two agents of one
        partition must not fence each other)."""
        if not self.exactly_once:
            return
        loop = asyncio.get_running_loop()
        for partition in sorted(p for p in partitions if p >= 0):
            if partition in self._transactional:
                continue
            async with self._creating.setdefault(partition, asyncio.Lock()):
                if partition not in self._transactional:
                    await loop.run_in_executor(None, self.producer_for, partition, loop)

    def begin_commit(self, partition: int) -> None:
        """From the checkpoint's snapshot until :meth:`commit_partition` ends, hold the partition's outputs."""
        if self.exactly_once:
            self._committing.setdefault(partition, asyncio.Event())

    def end_commit(self, partition: int) -> None:
        event = self._committing.pop(partition, None)
        if event is not None:
            event.set()

    async def commit_partition(self, partition: int, timeout: float | None = None) -> bool:
        """Exactly-once: commit the partition's open transaction (its outputs and checkpoint become
        visible to read_committed consumers together) and begin the next. A broker that does not answer
        is waited out up to the transaction timeout; a fenced or aborted transaction raises (the
        partition's state is ahead of what was committed: the worker must restart from the checkpoint)."""
        from confluent_kafka import KafkaException

        producer = self._transactional[partition]
        loop = asyncio.get_running_loop()
        limit = self.settings.worker.transaction_timeout_s if timeout is None else timeout
        started = time.monotonic()
        while True:
            try:
                await loop.run_in_executor(None, producer.commit_transaction, max(0.1, min(5.0, limit)))
                break
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable() and time.monotonic() - started < limit:
                    self._broker_away(started)
                    log.warning("commit of partition %s not done after %.0f s (%s); retrying", partition,
                                time.monotonic() - started, error.str())
                    continue
                if error.retriable():
                    return False
                raise RuntimeError(f"transaction of partition {partition} failed: {error.str()}; restart to "
                                   "resume from the last committed checkpoint") from None
        self._broker_back("transaction committed")
        producer.begin_transaction()
        return True

    @property
    def serving(self) -> bool:
        """Ready (rebalancing aside): state loaded, outputs getting through, the broker answering."""
        return self.ready and self.broker_away_since is None and self.broker_unanswered_since is None

    def _broker_away(self, since: float) -> None:
        """Outputs are not getting through: not ready until they do (liveness is unaffected)."""
        if self.broker_away_since is None:
            self.broker_away_since = since
        self.metrics.ready.set(0)

    def _broker_back(self, what: str) -> None:
        if self.broker_away_since is not None:
            log.warning("broker back after %.0f s; %s", time.monotonic() - self.broker_away_since, what)
            self.broker_away_since = None
            self.metrics.ready.set(1 if self.serving else 0)

    def broker_answers(self, timeout: float) -> bool:
        """Whether the broker answers a metadata request for the ticks topic through the output producer
        (blocks up to ``timeout``: not on the event loop). An idle worker publishes nothing, so only this
        tells it that the broker has gone."""
        from confluent_kafka import KafkaException

        try:
            self.producer.list_topics(topic=self.topic_names["ticks"], timeout=timeout)
        except KafkaException:
            return False
        return True

    def note_probe(self, answered: bool, started: float) -> None:
        """A probe's answer (:meth:`broker_answers`): not ready while the broker does not answer."""
        if not answered:
            if self.broker_unanswered_since is None:
                self.broker_unanswered_since = started
                log.warning("the broker does not answer a metadata request: not ready until it does")
            self.metrics.ready.set(0)
        elif self.broker_unanswered_since is not None:
            log.warning("the broker answers again after %.0f s", time.monotonic() - self.broker_unanswered_since)
            self.broker_unanswered_since = None
            self.metrics.ready.set(1 if self.serving else 0)

    def drop_partition_producers(self, partitions: set[int]) -> None:
        """After a revocation: the next owner fences these transactional ids."""
        for partition in partitions:
            self._transactional.pop(partition, None)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}: {err}")
            log.error("delivery to %s failed: %s", msg.topic(), err)

    def produce_now(self, stage: str, key: bytes | None, record: dict[str, Any] | None,
                    timestamp_ms: int | None = None, partition: int | None = None,
                    to_partition: int | None = None) -> bool:
        """Hand a record for a stage's topic to librdkafka, Avro-encoded with the stage's codec (None: a
        tombstone, no value, for a compacted topic); False when librdkafka's queue is full (nothing was
        queued: serve deliveries, then try again).
        ``partition`` is the input partition whose event caused it (exactly-once: its transaction);
        ``to_partition`` the output topic's partition to write to (default: by the key's hash)."""
        producer = self.producer_for(partition)
        placed = {} if to_partition is None else {"partition": to_partition}
        try:
            value = None if record is None else self.codecs[stage].encode(record)
            producer.produce(self.topic_names[stage], key=key, value=value,
                             timestamp=kafka_timestamp(timestamp_ms), on_delivery=self._on_delivery, **placed)
        except BufferError:
            producer.poll(0.01)
            return False
        self.metrics.child(self.metrics.outputs, stage).inc()
        return True

    async def publish(self, stage: str, key: bytes | None, record: dict[str, Any] | None,
                      timestamp_ms: int | None = None, partition: int | None = None,
                      owned: Callable[[], bool] | None = None, to_partition: int | None = None) -> bool:
        """Queue a record for a stage's topic (at ``to_partition``, see :meth:`produce_now`), waiting
        while librdkafka's queue is full or the partition's transaction is being committed. ``owned``
        says whether the input partition whose event caused the record is still this worker's, with
        the state the event was applied to: it is asked again after every wait, and once it says no
        the record is withheld (counted; False).
        The partition was revoked while the event was in flight: the next owner re-applies the
        event, and under exactly-once a record produced here would re-create the partition's
        transactional producer and fence that owner, or, the partition having come back to this
        worker, be committed with a checkpoint that has not seen the event."""
        if owned is not None and not owned():
            return self._withheld(stage)
        if self.exactly_once and partition is not None and partition >= 0 and partition not in self._transactional:
            await self.fence({partition})
        held = self._committing.get(partition) if stage != "checkpoints" else None
        while held is not None:
            await held.wait()
            held = self._committing.get(partition)
        while True:
            if owned is not None and not owned():
                return self._withheld(stage)
            if self.produce_now(stage, key, record, timestamp_ms, partition, to_partition):
                break
            await asyncio.sleep(0)
        self.producer_for(partition).poll(0)
        return True

    def _withheld(self, stage: str) -> bool:
        self.metrics.withheld.labels(stage).inc()
        return False

    def flush_now(self, timeout: float = 30.0) -> None:
        """Block until every published record is acknowledged by the broker; raise on delivery errors."""
        remaining = self.producer.flush(timeout)
        if remaining or self.delivery_errors:
            errors = list(self.delivery_errors)
            self.delivery_errors.clear()
            raise RuntimeError(f"{remaining} records undelivered after {timeout} s; errors: {errors[:3]}")

    async def deliver_outputs(self, give_up_after: float | None = None, attempt_s: float = 5.0) -> bool:
        """Wait until every published record is on the broker. A broker that does not answer is waited
        out (the worker's producer never times records out): not ready meanwhile, a log line every
        attempt, ready again once delivered. False after ``give_up_after`` seconds, if given. A record
        the broker refused (a delivery error) raises: retrying cannot deliver it."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        while True:
            wait = attempt_s if give_up_after is None else max(0.0, min(attempt_s, started + give_up_after
                                                                        - time.monotonic()))
            remaining = await loop.run_in_executor(None, self.producer.flush, wait)
            if self.delivery_errors:
                errors = list(self.delivery_errors)
                self.delivery_errors.clear()
                raise RuntimeError(f"{len(errors)} records refused by the broker: {errors[:3]}")
            if not remaining:
                self._broker_back("outputs delivered")
                return True
            self._broker_away(started)
            log.warning("%d records not yet delivered after %.0f s: the broker does not answer; retrying", remaining,
                        time.monotonic() - self.broker_away_since)
            if give_up_after is not None and time.monotonic() - started >= give_up_after:
                return False

    def dead_letter_record(self, stage: str, reason_code: str, reason: str, topic: str, partition: int,
                           offset: int, key: Any, value: Any) -> dict[str, Any]:
        """A rejected input with its reason and original bytes; counted and logged."""
        self.metrics.dead_letters.labels(stage, reason_code).inc()
        left_out = self.dead_letter_lines.admit((stage, reason_code))
        if left_out is not None:
            more = "" if not left_out else (
                f" ({left_out:,} more {reason_code} dead letters from {stage} since the last line of them: "
                "each is on the dead-letters topic and counted in livelearn_dead_letters_total)")
            log.warning("dead letter from %s at %s[%s]@%s: %s%s", stage, topic, partition, offset, reason, more)
        return dead_letter(stage, reason_code, reason, topic, partition, offset, key, value)

    async def dead_letter(self, stage: str, reason_code: str, reason: str, topic: str, partition: int, offset: int,
                          key: Any, value: Any, owned: Callable[[], bool] | None = None) -> None:
        """Keep a rejected input with its reason; never raises (the dead-letter path must not stop a worker).
        A rejected input event's dead letter belongs to its partition's transaction (exactly-once), and
        is withheld as its other outputs are once the partition is no longer owned (:meth:`publish`)."""
        if owned is not None and not owned():
            self._withheld("dead-letters")
            return
        record = self.dead_letter_record(stage, reason_code, reason, topic, partition, offset, key, value)
        in_pipeline = topic in self.input_topics
        try:
            await self.publish("dead-letters", record["key"], record, partition=partition if in_pipeline else None,
                               owned=owned)
        except Exception:
            log.exception("could not publish a dead letter from %s", stage)
