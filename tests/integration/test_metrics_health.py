"""Metrics and health endpoints scraped from a real worker during a replay."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import pytest

from tests.conftest import ROOT, livelearn
from tests.kafka_io import produce

pytestmark = pytest.mark.integration

FILE = ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"


def sample(body: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if all(f'{k}="{v}"' in (match.group(2) or "") for k, v in labels.items()) or got == want:
            return float(match.group(3))
    return None


def test_metrics_and_health_during_a_replay(worker_factory, pipeline_env, tmp_path):
    # Bound to another loopback address than the default: the setting reaches Faust's web server.
    worker = worker_factory({"LIVELEARN_DRIFT_WINDOW": "200", "LIVELEARN_DRIFT_WARMUP": "100",
                             "LIVELEARN_WEB_BIND": "127.0.0.2"}).start()
    assert worker.get("/healthz") == (200, '{"status":"alive"}')
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{pipeline_env['LIVELEARN_WEB_PORT']}/healthz", timeout=5)
    status, body = worker.get("/readyz")
    assert status == 200 and '"ready":true' in body

    replay = threading.Thread(target=livelearn, args=("replay", str(FILE), "--speed", "8000", "--quiet"),
                              kwargs={"env": pipeline_env, "timeout": 300})
    replay.start()
    produce(pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], pipeline_env["LIVELEARN_TOPIC_PREFIX"] + "ticks",
            [(b"BTCUSDT", b"not avro", None)])
    scrapes = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status, body = worker.get("/metrics")
        assert status == 200
        scrapes.append(body)
        if (sample(body, "livelearn_events_total", stage="predict") or 0) >= 1440:
            break
        time.sleep(1.0)
    replay.join(60)
    first, last = scrapes[0], scrapes[-1]
    assert len(scrapes) >= 3, "the replay should take several scrapes"
    # Counters move during the replay.
    mid = scrapes[len(scrapes) // 2]
    assert 0 < (sample(mid, "livelearn_events_total", stage="featurize") or 0) < 1440 or len(scrapes) < 5
    assert sample(last, "livelearn_events_total", stage="featurize") == 1440
    assert sample(last, "livelearn_events_total", stage="predict") == 1440
    assert (sample(first, "livelearn_events_total", stage="predict") or 0) < 1440
    # Latency histograms, per-member scores and weights, label lag, drift statistics, dead letters.
    # Every record handled is timed, the dead-lettered one too.
    assert sample(last, "livelearn_processing_seconds_count", stage="featurize") == 1441
    assert sample(last, "livelearn_processing_seconds_count", stage="predict") == 1440
    for member in ("logreg", "mlp", "micro", "ensemble", "persistence", "trade_side", "prior", "constant"):
        accuracy = sample(last, "livelearn_member_accuracy", symbol="BTCUSDT", member=member)
        assert accuracy is not None and 0.0 <= accuracy <= 1.0
        assert sample(last, "livelearn_member_log_loss", symbol="BTCUSDT", member=member) > 0
    experts = ("constant", "prior", "logreg", "logreg~cal", "mlp", "mlp~cal", "micro", "micro~cal", "side",
               "side~cal", "imbalance", "imbalance~cal")
    weights = [sample(last, "livelearn_ensemble_weight", symbol="BTCUSDT", member=m) for m in experts]
    assert sum(weights) == pytest.approx(1.0)
    # Skill against both no-skill references, and the share of flat outcomes.
    for reference in ("prior", "constant"):
        skill = sample(last, "livelearn_skill", symbol="BTCUSDT", model="ensemble", reference=reference)
        assert skill is not None and -1.0 < skill < 1.0
    assert 0.0 <= sample(last, "livelearn_flat_share", symbol="BTCUSDT") < 0.05
    # A day of one-minute klines shows no skill: the skill gate keeps the forecasts at 0.5.
    assert sample(last, "livelearn_skill_shown", symbol="BTCUSDT") == 0.0
    assert sample(last, "livelearn_label_lag_seconds_count") >= 1400
    assert sample(last, "livelearn_label_lag_seconds_sum") == pytest.approx(
        sample(last, "livelearn_label_lag_seconds_count") * 300.0)  # 5 one-minute klines
    p_value = sample(last, "livelearn_drift_p_value", symbol="BTCUSDT", kind="FEATURE", stream="ret_1")
    assert p_value is not None and 0.0 <= p_value <= 1.0
    assert sample(last, "livelearn_dead_letters_total", stage="featurize", reason="decode_error") == 1
    assert sample(last, "livelearn_ready") == 1
    # The worker's drift defaults: alpha 0.0008, a check every 20 events; the basis channel every 5.
    for kind in ("FEATURE", "VARIANCE", "CONCEPT", "PREDICTION"):
        assert sample(last, "livelearn_drift_false_alarms_per_10k_bound", kind=kind) == pytest.approx(0.4)
    assert sample(last, "livelearn_drift_false_alarms_per_10k_bound", kind="BASIS") == pytest.approx(1.6)
    assert "livelearn_consumer_lag" in last and "livelearn_alerts_total" in last
    # Process and platform collectors, as every Prometheus client exports by default.
    assert sample(last, "process_cpu_seconds_total") > 0 and sample(last, "process_resident_memory_bytes") > 0
    assert "python_info{" in last

    # The report of this run: real PNG plots decoded from the page, counts of this run's topics.
    out = tmp_path / "report.html"
    result = livelearn("report", "--out", str(out), env=pipeline_env, timeout=180)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert "1440 predictions" in page and "BTCUSDT: price with predictions" in page
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) >= 4
    import base64
    import io

    from matplotlib import image

    for encoded in images:
        pixels = image.imread(io.BytesIO(base64.b64decode(encoded)), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 300
        assert pixels.std() > 0.01  # not a blank canvas
