"""`livelearn demo`: the main job end to end on the real BTCUSDT/ETHUSDT klines shipped with livelearn.

Starts the local broker (unless KAFKA_BOOTSTRAP_SERVERS is set), gives this run its own topics and
consumer group, starts a worker process, replays the sample, shows progress while predictions,
outcomes and alerts come back, then prints a summary and writes the HTML report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from agents.settings import Settings
from cli.processes import stop_process
from connectors.status_line import StatusLine
from schemas.codec import make_codec

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_NAMES = ("BTCUSDT-1m-2020-01-01.zip", "ETHUSDT-1m-2022-08-14.zip")


def sample_files() -> list[Path]:
    """The shipped sample: ``data/`` of a source checkout, or ``<prefix>/share/livelearn/sample`` where
    a wheel installs it (``tool.setuptools.data-files`` in pyproject.toml)."""
    import sysconfig

    from cli.errors import CliError

    places = [ROOT / "data" / "binance" / "klines" / "spot",
              Path(sysconfig.get_path("data")) / "share" / "livelearn" / "sample"]
    for folder in places:
        if all((folder / name).is_file() for name in SAMPLE_NAMES):
            return [folder / name for name in SAMPLE_NAMES]
    raise CliError(f"the demo sample ({', '.join(SAMPLE_NAMES)}) is in none of {', '.join(map(str, places))}; "
                   "pass files to replay instead", code=2)


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def _wait_ready(port: int, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited ({process.returncode}); its log: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if json.loads(response.read())["ready"]:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the worker was not ready within {timeout:.0f} s; its log: {log}")


def run(base: Settings, files: list[Path] | None = None, report_dir: Path | None = None,
        timeout_s: float = 600.0) -> int:
    from cli.errors import require_broker
    from cli.kafka_local import LocalBroker
    from cli.report import write_report
    from connectors.replay import replay
    from connectors.sink import KafkaSink

    files = files or sample_files()
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        LocalBroker(base).up()
    require_broker(base)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    settings = dataclasses.replace(base, topic_prefix=f"{base.topic_prefix}demo-{run_id}.",
                                   app_id=f"{base.app_id}-demo-{run_id}")
    report_dir = report_dir or Path.cwd() / "reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    log_path = report_dir / f"worker-{run_id}.log"
    _say(f"run {run_id}: topics {settings.topic_prefix}*, worker log {log_path}")
    from agents.topics import create_topics

    create_topics(settings)
    env = {**os.environ, **settings.as_env(), "LIVELEARN_LOG_LEVEL": "warning"}
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        _wait_ready(settings.worker.web_port, worker, log_path)
        _say("worker ready; replaying " + ", ".join(f.name for f in files))
        sink = KafkaSink(settings.client_config(), settings.topic("ticks"), settings.topic("dead-letters"),
                         registry_url=settings.schema_registry_url, key_of=settings.partition_key)
        stats = replay(files, sink, speed=None, progress=False)
        _say(stats.summary().replace("\n", "\n      "))
        expected = stats.produced
        seen = follow(settings, expected, timeout_s)
        if seen.get("predictions", 0) < expected:
            _say(f"only {seen.get('predictions', 0)} of {expected} predictions arrived within {timeout_s:.0f} s; "
                 f"the worker's log is {log_path}")
    finally:
        stop_process(worker)
    from cli.evaluate import alert_budget, render, verdict
    from cli.report import load_run
    from streams.evaluation import evaluate_run

    run_data = load_run(settings)
    table = evaluate_run(run_data["predictions"], run_data["feedback"], run_data["features"]).summary()
    print()
    print(render(table, "skill against the no-skill references (constant 0.5, running prior):"))
    for sentence in verdict(table):
        print(sentence)
    severities = Counter(a["severity"] for a in run_data["alerts"] if a["status"] == "FIRING")
    print(f"\nticks {expected}, predictions {len(run_data['predictions'])}, outcomes "
          f"{sum(1 for f in run_data['feedback'] if f['source'] == 'market')}, alerts "
          f"{sum(severities.values())} ({', '.join(f'{k} {v}' for k, v in sorted(severities.items())) or 'none'}), "
          f"model events {len(run_data['model_events'])}, dead letters {len(run_data['dead_letters'])}")
    for alert in [a for a in run_data["alerts"] if a["status"] == "FIRING"][:5]:
        print(f"  alert {alert['severity']:8s} {alert['symbol']} {alert['kind']:10s} {alert['test_name']} "
              f"adj.p={alert['adjusted_p_value']:.1e} streams={','.join(alert['affected_features'][:4])}")
    for line in alert_budget(settings, run_data["predictions"], run_data["alerts"]).lines():
        print(line)
    report = write_report(settings, report_dir / f"report-{run_id}.html", run_data)
    print(f"\nreport: {report}")
    print(f"read the topics again with: LIVELEARN_TOPIC_PREFIX={settings.topic_prefix} livelearn predictions --from-beginning")
    return 0 if len(run_data["predictions"]) >= expected else 1


def follow(settings: Settings, expected: int, timeout_s: float) -> dict[str, int]:
    """Show progress until every replayed tick has its prediction (or the timeout)."""
    from confluent_kafka import Consumer

    codecs = {settings.topic(s): make_codec(schema, settings.schema_registry_url, settings.topic(s))
              for s, schema in (("predictions", "prediction"), ("outcomes", "feedback"), ("alerts", "drift_alert"))}
    consumer = Consumer({**settings.client_config(), "group.id": f"demo-progress-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(list(codecs))
    counts = Counter()
    started = time.monotonic()
    line = StatusLine(sys.stdout, every_s=1.0, log_every_s=10.0)

    def text() -> str:
        return (f"demo: predictions {counts['predictions']}/{expected}  outcomes {counts['outcomes']}  "
                f"alerts {counts['firing']}")

    try:
        while counts["predictions"] < expected and time.monotonic() - started < timeout_s:
            for message in consumer.consume(500, 0.2):
                if message.error():
                    continue
                record = codecs[message.topic()].decode(message.value())
                stage = message.topic()[len(settings.topic_prefix):]
                counts[stage] += 1
                if stage == "alerts" and record["status"] == "FIRING":
                    counts["firing"] += 1
            if line.due():
                line.write(text())
    finally:
        consumer.close()
    line.close(text())
    return dict(counts)
