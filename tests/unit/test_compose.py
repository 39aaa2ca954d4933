"""docker-compose.yml must agree with the settings object."""

from __future__ import annotations

from pathlib import Path

import yaml

from agents.settings import Settings, settings_table

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
KNOWN_ENV = {env for _, env, _, _ in settings_table()}
DEFAULTS = Settings()


def test_services_present():
    assert {"kafka", "worker", "replay", "prometheus", "grafana"} <= set(COMPOSE["services"])


def test_worker_and_replay_environment_uses_only_known_settings():
    for name in ("worker", "replay"):
        env = COMPOSE["services"][name]["environment"]
        unknown = set(env) - KNOWN_ENV
        assert not unknown, f"{name} sets unknown variables {unknown}"
        assert env["LIVELEARN_TOPIC_PREFIX"] == DEFAULTS.topic_prefix


def test_ports_match_settings():
    kafka_ports = COMPOSE["services"]["kafka"]["ports"]
    assert f"{DEFAULTS.kafka_port}:{DEFAULTS.kafka_port}" in kafka_ports
    worker = COMPOSE["services"]["worker"]
    assert worker["environment"]["LIVELEARN_WEB_PORT"] == DEFAULTS.web_port
    assert f"{DEFAULTS.web_port}:{DEFAULTS.web_port}" in worker["ports"]
    bootstrap = worker["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
    host, port = bootstrap.split(":")
    assert host == "kafka" and f"PLAINTEXT://{host}:{port}" in COMPOSE["services"]["kafka"]["environment"][
        "KAFKA_ADVERTISED_LISTENERS"]


def test_worker_http_server_is_reachable_from_other_containers():
    assert DEFAULTS.web_bind == "127.0.0.1"  # a worker started by hand listens on loopback only
    assert COMPOSE["services"]["worker"]["environment"]["LIVELEARN_WEB_BIND"] == "0.0.0.0"


def test_prometheus_scrapes_the_worker_port():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"worker:{DEFAULTS.web_port}"]


def test_replay_service_reads_shipped_files():
    command = COMPOSE["services"]["replay"]["command"]
    files = [arg for arg in command if arg.endswith(".zip")]
    assert files and all((ROOT / f).exists() for f in files)
