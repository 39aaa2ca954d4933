"""Shared fixtures: the real local Kafka broker, unique topic names, worker subprocesses."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from cli.kafka_local import delete_topics_containing, free_port

ROOT = Path(__file__).resolve().parents[1]
# Real data the tests read, copied into the repository with its provenance (data/README.md).
DATA = ROOT / "data"
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def livelearn(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, **kwargs)


def same_up_to_float32(a, b) -> bool:
    """Equal, floats within a relative 1e-6: torch's float32 kernels round differently on other processors
    (AVX2 or AVX-512; measured in tests/integration/test_backtest_kafka.py's docstring)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_up_to_float32(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_up_to_float32(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture(scope="session")
def kafka() -> str:
    """A real broker: the running one, or one started through `livelearn kafka up` for this session."""
    host, port = BOOTSTRAP.split(",")[0].rsplit(":", 1)
    started = False
    if not _port_open(host, int(port)):
        result = livelearn("kafka", "up", timeout=600)
        if result.returncode != 0:
            pytest.fail(f"could not start the local broker:\n{result.stdout}{result.stderr}")
        started = True
    yield BOOTSTRAP
    if started:
        livelearn("kafka", "down", timeout=120)


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def pipeline_env(kafka, run_id, tmp_path):
    """Settings for one isolated pipeline: its own topics, consumer group, state dir and port. Its
    topics (all named with ``run_id``) are deleted afterwards."""
    yield {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "LIVELEARN_TOPIC_PREFIX": f"t{run_id}.",
        "LIVELEARN_APP_ID": f"livelearn-test-{run_id}",
        "LIVELEARN_WEB_PORT": str(free_port()),
        "LIVELEARN_STATE_DIR": str(tmp_path / "state"),
        "LIVELEARN_PARTITIONS": "2",
        "LIVELEARN_LOG_LEVEL": "warning",
    }
    delete_topics_containing(kafka, run_id)


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.env.get('LIVELEARN_WEB_BIND', '127.0.0.1')}:{self.env['LIVELEARN_WEB_PORT']}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def start(self, timeout: float = 120.0) -> Worker:
        # 120 s, as the slow tests already gave it: with the chaos and outage lanes starting brokers
        # and workers beside the integration tests, one worker here was not ready within 60 s (once in five runs).
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT,
                                        env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        last = "no answer"
        while time.monotonic() < started + timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_path.read_text()[-4000:]}")
            try:
                status, body = self.get("/readyz")
                if status == 200 and json.loads(body)["ready"]:
                    return self
                last = f"{status} {body}"
            except OSError as exc:
                last = f"no answer ({exc})"
            time.sleep(0.3)
        raise RuntimeError(f"worker not ready in {timeout} s (last /readyz: {last}):\n"
                           f"{self.log_path.read_text()[-4000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def worker_factory(pipeline_env, tmp_path):
    workers: list[Worker] = []

    def make(extra_env: dict[str, str] | None = None) -> Worker:
        worker = Worker({**pipeline_env, **(extra_env or {})}, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop(kill=True)


def _private_broker():
    """A broker of the test's own (its own ports and data), for tests that kill and restart it."""
    import shutil

    from agents.settings import Settings
    from cli.kafka_local import BrokerError, LocalBroker

    for attempt in (1, 2):  # a second try on fresh ports if the first cannot start (seen once here)
        broker = LocalBroker(Settings(kafka_port=str(free_port()), kafka_controller_port=str(free_port())))
        try:
            broker.up(wait_s=180)
            break
        except BrokerError as exc:
            broker.down()
            shutil.rmtree(broker.broker_dir, ignore_errors=True)
            if attempt == 2:
                raise
            print(f"private broker did not start, trying again: {exc}", file=sys.stderr)
    try:
        yield broker
    finally:
        broker.down()
        shutil.rmtree(broker.broker_dir, ignore_errors=True)


@pytest.fixture
def private_broker():
    yield from _private_broker()


@pytest.fixture(scope="module")
def private_broker_for_module():
    yield from _private_broker()
