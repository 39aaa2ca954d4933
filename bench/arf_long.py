"""A forest member on a long tabular stream through a real worker, killed and restarted midway.

45,000 rows of River's Agrawal generator (a synthetic tabular stream; seed 42) are replayed onto the
external-features topic of a worker with ``LIVELEARN_MEMBERS=arf``. The worker is killed with SIGKILL
after ``--kill-at`` predictions and restarted; its predictions are compared with those of the same
pipeline run in this process (which the worker equals: tests/integration/test_backtest_kafka.py).
Prints the largest checkpoint (compressed bytes and parts) and one RESULT line.

Usage: python bench/arf_long.py [--rows 45000] [--kill-at 20000]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, isolated_settings, result, wait_ready

from agents.settings import Settings
from cli.processes import stop_process
from schemas.codec import AvroCodec


def write_stream(path: Path, rows: int) -> None:
    from river.datasets import synth

    with path.open("w", newline="") as handle:
        writer = None
        for x, y in itertools.islice(synth.Agrawal(seed=42), rows):
            if writer is None:
                writer = csv.writer(handle)
                writer.writerow([*x, "label"])
            writer.writerow([*(float(v) for v in x.values()), int(y)])


def in_process(path: Path, settings: Settings) -> dict[str, float]:
    from agents.app import pipeline_config
    from connectors.datasets import labelled_vectors
    from streams.pipeline import PartitionPipeline

    pipeline = PartitionPipeline(pipeline_config(settings))
    out = {}
    for vector, _, _ in labelled_vectors(str(path), symbol="AGRAWAL"):
        if vector is None:
            raise RuntimeError(f"{path}: a row the dataset reader rejects")
        for output in pipeline.on_vector(vector).records:
            if output.stage == "predictions":
                out[output.record["prediction_id"]] = output.record["probability_up"]
    return out


def read_predictions(settings: Settings, want: int, timeout: float) -> dict[str, float]:
    from confluent_kafka import Consumer

    codec = AvroCodec.for_topic_schema("prediction")
    consumer = Consumer({**settings.client_config(), "group.id": f"arf-{time.time()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([settings.topic("predictions")])
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < want and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if not message.error():
                    record = codec.decode(message.value())
                    seen[record["prediction_id"]] = record["probability_up"]
    finally:
        consumer.close()
    return seen


def worker(settings: Settings) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **settings.as_env()},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(settings.worker.web_port, process, timeout=180)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=45_000)
    parser.add_argument("--kill-at", type=int, default=20_000)
    args = parser.parse_args()
    base = isolated_settings(Settings.from_env(), "arf")
    import dataclasses

    settings = dataclasses.replace(base, members="arf", horizon_ticks="3", drift_response="off")
    path = Path(tempfile.mkdtemp()) / "agrawal.csv"
    write_stream(path, args.rows)
    started = time.perf_counter()
    expected = in_process(path, settings)
    in_process_s = time.perf_counter() - started
    print(f"in process: {len(expected)} predictions in {in_process_s:.0f} s", flush=True)

    first = worker(settings)
    subprocess.run([sys.executable, "-m", "cli.main", "replay-dataset", str(path), "--symbol", "AGRAWAL"], cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT), **settings.as_env()}, check=True,
                   stdout=subprocess.DEVNULL)
    read_predictions(settings, args.kill_at, 3600)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = worker(settings)
    got = read_predictions(settings, args.rows, 3600)
    stop_process(second)
    codec = AvroCodec.for_topic_schema("checkpoint")
    from tests.kafka_io import read_topic

    records = [codec.decode(m.value()) for m in read_topic(settings.bootstrap_servers, settings.topic("checkpoints"),
                                                           idle=3.0)]
    biggest = max(records, key=lambda r: r["parts"])
    different = sum(1 for k, v in expected.items() if got.get(k) != v)
    print(f"worker: {len(got)} predictions after a kill at {args.kill_at}; {different} differ from in-process; "
          f"largest checkpoint {biggest['parts']} parts")
    result("arf_long", rows=args.rows, kill_at=args.kill_at, predictions=len(got), missing=len(expected) - len(got),
           different=different, max_parts=biggest["parts"], checkpoints=len(records), in_process_s=round(in_process_s))


if __name__ == "__main__":
    main()
