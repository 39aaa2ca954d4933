"""Reference forwarders for bench/pipeline.py and bench/latency.py: what the worker is compared with.

Each one consumes a topic and produces every record unchanged to ``<topic>.out``, on the same broker
as the worker, as its own process:

* ``confluent``: a plain confluent-kafka consume -> produce loop (this file run as a script): the
  physical floor of Kafka and librdkafka on this machine;
* ``quix``: a Quix Streams no-op application (``bench/quix_noop.py``), the peer a user would pick.
  Quix Streams is a benchmark-only dependency: it runs from its own virtual environment
  (``~/.cache/livelearn/bench-quix-<version>``, made on first use with pip; its confluent-kafka pin
  differs from the project's), so the project's environment is not touched;
* ``faust``: the Faust no-op agent (``bench/noop_app.py``), the framework's own ceiling;
* ``faust_rdkafka``: the same agent forwarding through a confluent-kafka producer instead of Faust's
  own (``NOOP_OUTPUT=librdkafka``), as the worker publishes its outputs: Faust's input path alone.
  Beside ``faust`` it shows where the no-op's latency goes (2026-11-30, 400 ticks/s, three alternating
  runs, p50 / p99 ms: ``faust`` 9.2-11.7 / 17-25, ``faust_rdkafka`` 2.4-4.8 / 13-25, ``confluent``
  2.4-2.6 / 4.7-6.4): most of the median is Faust's output path (its producer), the tail its input
  path. Faust's consumer settings did not move either (``broker_max_poll_records`` 20,
  ``stream_buffer_maxsize`` 16, ``broker_commit_interval`` 10 s: inside the run-to-run spread).

Readers must not add latency of their own. librdkafka's ``consume(n, timeout)`` returns only when
``n`` records are waiting or ``timeout`` has passed, so a reader built on it adds up to ``timeout``
to every sample at modest rates; :func:`take` waits for the first record with ``poll`` (which returns
as soon as one is there) and then takes whatever else is already fetched without waiting.
bench/latency.py measures the reader itself (produce -> read, nothing between) beside the others.

Usage (what bench/ runs): python bench/forwarders.py confluent IN_TOPIC GROUP_ID
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIX_VERSION = "3.28.1"
QUIX_ENV = Path.home() / ".cache" / "livelearn" / f"bench-quix-{QUIX_VERSION}"
KINDS = ("confluent", "quix", "faust", "faust_rdkafka")


def take(consumer, limit: int = 1000, timeout: float = 0.1) -> list:
    """Records that are ready: waits up to ``timeout`` for the first one only."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, 0)]


def quix_python(create: bool = True) -> str | None:
    """The Quix Streams environment's interpreter, made with pip on first use (about 40 s)."""
    python = QUIX_ENV / "bin" / "python"
    if python.exists() or not create:
        return str(python) if python.exists() else None
    # Imported here: run as a script, the confluent forwarder imports nothing of the project.
    from common import tool_env

    made = tool_env(QUIX_ENV.name.removeprefix("bench-"), f"quixstreams=={QUIX_VERSION}", "python")
    if made is None:
        print("bench: Quix Streams not available; its column is left out", file=sys.stderr)
    return made


def command(kind: str, topic: str, group: str, web_port: int) -> tuple[list[str], dict[str, str]] | None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    if kind == "confluent":
        return [sys.executable, str(ROOT / "bench" / "forwarders.py"), "confluent", topic, group], env
    if kind == "quix":
        python = quix_python()
        if python is None:
            return None
        # Its own environment only: the project's PYTHONPATH would shadow Quix's confluent-kafka.
        env.pop("PYTHONPATH", None)
        return [python, str(ROOT / "bench" / "quix_noop.py"), topic, group], env
    if kind in ("faust", "faust_rdkafka"):
        output = {"NOOP_OUTPUT": "librdkafka"} if kind == "faust_rdkafka" else {}
        return [sys.executable, str(ROOT / "bench" / "noop_app.py")], {
            **env, "PYTHONPATH": str(ROOT), "NOOP_TOPIC": topic, "NOOP_APP_ID": group,
            "NOOP_WEB_PORT": str(web_port), **output}
    raise ValueError(f"unknown forwarder {kind!r}; one of {', '.join(KINDS)}")


def forwarding(bootstrap: str, topic: str, timeout: float = 120.0) -> None:
    """Until a probe record comes out of ``<topic>.out``: a forwarder's process is up well before its
    consumer group has been joined and assigned."""
    from confluent_kafka import Consumer, Producer

    probe = f"probe-{uuid.uuid4().hex}".encode()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=probe)
    producer.flush()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic + ".out"])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error() and message.value() == probe:
                return
    finally:
        consumer.close()
    raise RuntimeError(f"nothing forwarded from {topic} within {timeout:.0f} s")


@contextlib.contextmanager
def running(kind: str, bootstrap: str, topic: str, group: str, web_port: int, ready_probe: bool = True):
    """The forwarder ``kind`` on ``topic`` -> ``topic.out`` as a subprocess; None if it cannot run
    here (Quix Streams not installable). With ``ready_probe`` it has forwarded a probe on entry
    (count one extra record on the output)."""
    spec = command(kind, topic, group, web_port)
    if spec is None:
        yield None
        return
    argv, env = spec
    # The forwarders keep their state (Faust's data directory, Quix's state) under TMPDIR: one of
    # their own, removed with them, so that benchmarks leave nothing behind in /tmp.
    scratch = tempfile.TemporaryDirectory(prefix=f"{group}-")
    process = subprocess.Popen(argv, cwd=ROOT / "bench", env={**env, "TMPDIR": scratch.name},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if ready_probe:
            forwarding(bootstrap, topic)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        scratch.cleanup()


def confluent_loop(topic: str, group: str) -> None:
    """consume -> produce until SIGTERM; offsets committed by librdkafka every 5 s (its default)."""
    from confluent_kafka import Consumer, Producer

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 5})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consumer.subscribe([topic])
    out = topic + ".out"
    try:
        while not stopping:
            for message in take(consumer):
                if message.error():
                    continue
                producer.produce(out, key=message.key(), value=message.value())
            producer.poll(0)
    finally:
        producer.flush(10)
        consumer.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "confluent":
        sys.exit(__doc__.splitlines()[-1])
    confluent_loop(sys.argv[2], sys.argv[3])
