"""The Faust application: settings, topics, codecs, metrics, dead letters and the HTTP endpoints.

Stage agents live in their own modules (featurize, predict, learn) and are imported by
:mod:`agents.worker`; this module only wires what they share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from faust.serializers import codecs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.metrics import Metrics
from agents.settings import Settings
from agents.topics import FLOW
from schemas.codec import make_codec

log = logging.getLogger("livelearn")

settings = Settings.from_env()
metrics = Metrics()


class FaustAvro(codecs.Codec):
    """Registers a livelearn Avro codec with Faust's codec registry."""

    def __init__(self, codec: Any, **kwargs: Any):
        self.avro = codec
        super().__init__(**kwargs)

    def _dumps(self, obj: Any) -> bytes:
        return self.avro.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self.avro.decode(s)


def broker_credentials(s: Settings):
    """Faust (aiokafka) credentials for the configured protocol: the TLS settings as an
    ``ssl.SSLContext`` for SSL and SASL_SSL, SASL user and mechanism for the SASL protocols. Without
    them Faust would speak plaintext whatever KAFKA_SECURITY_PROTOCOL says."""
    protocol = s.protocol
    context = s.ssl_context()
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                     mechanism=s.sasl_mechanism.strip().upper(), ssl_context=context)
    return None


app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
    broker_credentials=broker_credentials(settings),
    key_serializer="raw",
    value_serializer="raw",
    store="memory://",
    datadir=str(settings.state_path / "faust"),
    topic_partitions=settings.n_partitions,
    topic_replication_factor=settings.n_replicas,
    consumer_auto_offset_reset="earliest",
    processing_guarantee="at_least_once",
    web_port=settings.web_port_int,
    web_bind=settings.web_bind,
    producer_linger_ms=1,
    producer_max_request_size=16 * 1024 * 1024,
    broker_commit_every=1000,
    # A killed worker's partitions move after this long (Faust's default of 60 s stalls a restart).
    broker_session_timeout=10.0,
    broker_heartbeat_interval=2.0,
    broker_commit_interval=1.0,
)

topics: dict[str, faust.TopicT] = {}
avro: dict[str, Any] = {}
topic_names: dict[str, str] = {}
for spec in FLOW:
    name = topic_names[spec.stage] = settings.topic(spec.stage)
    topics[spec.stage] = app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.n_partitions)
    avro[spec.stage] = make_codec(spec.schema, settings.schema_registry_url, name,
                                  on_legacy=metrics.legacy_avro.labels(spec.stage).inc)
    codecs.register(f"livelearn-{spec.stage}", FaustAvro(avro[spec.stage]))


def _make_producer():
    from confluent_kafka import Producer

    return Producer({
        **settings.client_config(),
        # Same partitioner as aiokafka/Faust and the Java client: a symbol's records land in the same
        # partition number of every topic, which keeps the topics co-partitioned.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 2,
        "message.max.bytes": 16 * 1024 * 1024,
        "queue.buffering.max.messages": 1_000_000,
    })


# Outputs go through librdkafka: Faust's Topic.send costs ~250 µs a record here (profiled), a
# confluent-kafka produce a few µs. Delivery is confirmed (flush) before the inputs that caused
# them are acked, at each checkpoint (agents.checkpoints), which keeps at-least-once.
producer = _make_producer()
_delivery_errors: list[str] = []


def _on_delivery(err, msg) -> None:
    if err is not None:
        _delivery_errors.append(f"{msg.topic()}: {err}")
        log.error("delivery to %s failed: %s", msg.topic(), err)


def produce_now(stage: str, key: bytes | None, record: dict[str, Any], timestamp_ms: int | None = None) -> bool:
    """Hand a record for a stage's topic to librdkafka, Avro-encoded with the stage's codec; False
    when librdkafka's queue is full (nothing was queued: serve deliveries, then try again)."""
    try:
        producer.produce(topic_names[stage], key=key, value=avro[stage].encode(record), timestamp=timestamp_ms or 0,
                         on_delivery=_on_delivery)
    except BufferError:
        producer.poll(0.01)
        return False
    metrics.outputs.labels(stage).inc()
    return True


async def publish(stage: str, key: bytes | None, record: dict[str, Any], timestamp_ms: int | None = None) -> None:
    """Send a record to a stage's topic, Avro-encoded with the stage's codec."""
    while not produce_now(stage, key, record, timestamp_ms):
        await asyncio.sleep(0)
    producer.poll(0)


def flush_now(timeout: float = 30.0) -> None:
    """Block until every published record is acknowledged by the broker; raise on delivery errors."""
    remaining = producer.flush(timeout)
    if remaining or _delivery_errors:
        errors = list(_delivery_errors)
        _delivery_errors.clear()
        raise RuntimeError(f"{remaining} records undelivered after {timeout} s; errors: {errors[:3]}")


async def flush_outputs(timeout: float = 30.0) -> None:
    """Wait until every published record is acknowledged by the broker (before acking inputs)."""
    await asyncio.get_running_loop().run_in_executor(None, flush_now, timeout)


def dead_letter_record(stage: str, reason_code: str, reason: str, topic: str, partition: int, offset: int,
                       key: Any, value: Any) -> dict[str, Any]:
    """A rejected record with its reason, where it came from and its original bytes (counted)."""
    metrics.dead_letters.labels(stage, reason_code).inc()
    log.warning("dead letter from %s at %s[%s]@%s: %s", stage, topic, partition, offset, reason)
    return {
        "reason": reason,
        "reason_code": reason_code,
        "stage": stage,
        "source_topic": topic,
        "source_partition": int(partition),
        "source_offset": int(offset),
        "key": key if isinstance(key, bytes) else None,
        "value": value if isinstance(value, bytes) else bytes(str(value), "utf-8"),
        "error_time_ms": int(time.time() * 1000),
    }


async def dead_letter(message: Any, stage: str, reason_code: str, reason: str) -> None:
    """Keep a rejected record with its reason and original bytes; count it; never raise."""
    record = dead_letter_record(stage, reason_code, reason, message.topic, message.partition, message.offset,
                                message.key, message.value)
    try:
        await publish("dead-letters", record["key"], record)
    except Exception:  # the dead-letter path must not take the worker down
        log.exception("could not publish a dead letter from %s", stage)


state = {"ready": False}


@app.timer(interval=2.0)
async def export_consumer_lag():
    """Consumer-group lag per assigned partition: high watermark minus the committed offset."""
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    for tp in consumer.assignment():
        try:
            high = consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        if high is None:
            continue
        done = committed.get(tp)
        lag = high - (done + 1 if done is not None else 0)
        metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(lag, 0))


@app.page("/metrics")
async def metrics_page(web, request):
    return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/healthz")
async def healthz(web, request):
    return web.json({"status": "alive"})


@app.page("/readyz")
async def readyz(web, request):
    ready = state["ready"] and not app.rebalancing
    return web.json({"ready": ready}, status=200 if ready else 503)
