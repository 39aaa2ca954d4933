"""Per-event cost of the pure core, in process: decode a tick, run the partition pipeline (gate,
features, learning, prediction, drift), encode every output, on the real data in data/.

No Kafka and no Faust: this is the part of a worker's and a backtest's time that the project's own
code costs (issue #18). Torch and River are imported before timing (a worker does that at start).
Each file is timed ``--repeat`` times and the best run is reported (the machine is noisy); a RESULT
line per file gives microseconds per tick and per feature vector.

    python bench/core_cost.py [--repeat 3] [--limit 20000]
"""

from __future__ import annotations

import argparse
import time

from common import SHARED, result

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.replay import read_file
from schemas.codec import AvroCodec
from streams.learning import SymbolLearner
from streams.pipeline import PartitionPipeline

FILES = ("binance/klines/spot/BTCUSDT-1m-2020-01-01.zip", "binance/ws/spot_btcusdt_20240808.gz")
SCHEMAS = {"features": "features", "predictions": "prediction", "shadow-predictions": "prediction",
           "outcomes": "feedback", "alerts": "drift_alert", "model-events": "model_event",
           "performance": "performance"}


def run(raw: list[bytes], settings: Settings) -> tuple[float, int]:
    tick_codec = AvroCodec.for_topic_schema("tick")
    codecs = {stage: AvroCodec.for_topic_schema(schema) for stage, schema in SCHEMAS.items()}
    pipeline = PartitionPipeline(pipeline_config(settings))
    now_ms = int(time.time() * 1000)
    vectors = 0
    started = time.perf_counter()
    for value in raw:
        step = pipeline.on_tick(tick_codec.decode(value), now_ms)
        for output in step.records:
            codecs[output.stage].encode(output.record)
            vectors += output.stage == "features"
    return time.perf_counter() - started, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20_000, help="ticks per file")
    args = parser.parse_args()
    settings = Settings()
    SymbolLearner("WARMUP", pipeline_config(settings).learner)
    codec = AvroCodec.for_topic_schema("tick")
    for name in FILES:
        ticks = [item.tick for item in read_file(SHARED / name) if item.tick is not None][:args.limit]
        raw = [codec.encode(tick) for tick in ticks]
        best, vectors = min(run(raw, settings) for _ in range(args.repeat))
        result("core_cost", file=name, members=settings.members, ticks=len(raw), vectors=vectors,
               seconds=round(best, 3), us_per_tick=round(1e6 * best / len(raw), 1),
               us_per_vector=round(1e6 * best / max(vectors, 1), 1))


if __name__ == "__main__":
    main()
