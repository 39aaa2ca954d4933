"""A basis de-peg end to end on a real broker: the three pairs of one base asset produced by the CLI
are keyed by their group (one partition of two), and the worker's alert names the pair that moved and
the pair it moved against; `livelearn evaluate` of the run's topics counts those alerts against their
bound, over each pair's vectors."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from schemas.codec import AvroCodec
from tests.conftest import livelearn
from tests.kafka_io import read_topic
from tests.unit.test_drift_real import KLINES, basis_group, price_ticks

pytestmark = pytest.mark.integration

AT, N = 1000, 1200
SETTINGS = {"LIVELEARN_MEMBERS": "logreg", "LIVELEARN_PARTITIONS": "2"}


def test_a_depeg_is_alerted_on_the_pair_that_moved_with_its_group_in_one_partition(worker_factory, pipeline_env):
    worker_factory(SETTINGS).start()
    env = {**pipeline_env, **SETTINGS}
    ticks = basis_group(price_ticks(KLINES[0])[:N], AT, 0.02)
    lines = "".join(json.dumps({"symbol": t["symbol"], "kind": "TRADE", "event_time_ms": t["event_time_ms"],
                                "price": t["price"], "quantity": t["quantity"]}) + "\n" for t in ticks)
    result = livelearn("produce", "ticks", env=env, input=lines, timeout=120)
    assert result.returncode == 0, result.stderr
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    produced = read_topic(bootstrap, prefix + "ticks", expect=len(ticks), timeout=60)
    assert {m.key() for m in produced} == {b"BTC"} and len({m.partition() for m in produced}) == 1
    assert len(read_topic(bootstrap, prefix + "predictions", expect=len(ticks), timeout=240)) == len(ticks)
    time.sleep(2.0)
    codec = AvroCodec.for_topic_schema("drift_alert")
    alerts = [codec.decode(m.value()) for m in read_topic(bootstrap, prefix + "alerts", idle=3.0, timeout=30)]
    basis = [a for a in alerts if a["kind"] == "BASIS" and a["status"] == "FIRING"]
    assert basis and {a["symbol"] for a in basis} == {"BTCFDUSD"}, alerts
    first = min(basis, key=lambda a: a["created_time_ms"])
    assert first["reference_symbol"] in ("BTCUSDT", "BTCUSDC")
    assert 0 <= (first["created_time_ms"] - ticks[3 * AT]["event_time_ms"]) // 60_000 <= 30
    assert first["severity"] in ("HIGH", "CRITICAL")

    result = livelearn("evaluate", "--json", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    budget = json.loads(result.stdout)["_drift_alerts"]
    assert {symbol: rows["vectors"] for symbol, rows in budget.items()} == {s: N for s in ("BTCUSDT", "BTCUSDC",
                                                                                          "BTCFDUSD")}
    firing = Counter((a["symbol"], a["kind"]) for a in alerts if a["status"] == "FIRING")
    assert {(symbol, kind): row["alerts"] for symbol, rows in budget.items() for kind, row in rows.items()
            if kind != "vectors" and row["alerts"]} == dict(firing)
    assert budget["BTCFDUSD"]["BASIS"]["per_10k"] == len(basis) * 10_000 / N
    text = livelearn("evaluate", "--symbols", "BTCFDUSD", env=env, timeout=180).stdout
    assert f"BTCFDUSD: drift alerts over {N:,} vectors" in text and f"BASIS {len(basis)} = " in text, text
    assert "BTCUSDT: drift alerts" not in text, text
