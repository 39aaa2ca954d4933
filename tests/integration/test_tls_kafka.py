"""TLS and SASL end to end: a second real broker with SASL_SSL and SSL listeners (mutual TLS), the
pipeline (replay -> worker -> predictions) through it, and the errors a user sees when it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.settings import Settings
from cli.kafka_local import LocalBroker, SecureListeners
from tests.conftest import ROOT, free_port, livelearn
from tests.tls import KEY_PASSWORD, make_certificates

pytestmark = pytest.mark.integration

FILE = ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"
SCRAM = ("scram-user", "scram-secret")
PLAIN = ("alice", "alice-secret")


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    certificates = make_certificates(tmp_path_factory.mktemp("tls"))
    ports = {"plain": free_port(), "controller": free_port(), "sasl_ssl": free_port(), "ssl": free_port()}
    settings = Settings(kafka_port=str(ports["plain"]), kafka_controller_port=str(ports["controller"]))
    listeners = SecureListeners(ports["sasl_ssl"], ports["ssl"], certificates.broker_keystore, certificates.ca,
                                plain_users=(PLAIN,), scram_users=(SCRAM,))
    broker = LocalBroker(settings, listeners)
    broker.up(wait_s=180)
    try:
        yield ports, certificates
    finally:
        broker.down()
        shutil.rmtree(broker.broker_dir, ignore_errors=True)


def tls_env(certificates, port: int, protocol: str, user: tuple[str, str] | None = None,
            mechanism: str = "SCRAM-SHA-256", client_certificate: bool = True) -> dict[str, str]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "KAFKA_SECURITY_PROTOCOL": protocol,
           "KAFKA_SSL_CA_LOCATION": str(certificates.ca)}
    if client_certificate:
        env.update({"KAFKA_SSL_CERTIFICATE_LOCATION": str(certificates.client_certificate),
                    "KAFKA_SSL_KEY_LOCATION": str(certificates.client_key), "KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD})
    if user is not None:
        env.update({"KAFKA_SASL_MECHANISM": mechanism, "KAFKA_SASL_USERNAME": user[0],
                    "KAFKA_SASL_PASSWORD": user[1]})
    return env


def test_replay_worker_and_predictions_over_sasl_ssl_with_mutual_tls(secure_broker, worker_factory, pipeline_env,
                                                                       tmp_path: Path):
    ports, certificates = secure_broker
    env = {**pipeline_env, **tls_env(certificates, ports["sasl_ssl"], "SASL_SSL", SCRAM)}
    worker = worker_factory(env).start(timeout=120)
    result = livelearn("replay", str(FILE), "--quiet", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "produced 1440" in result.stdout
    printed = livelearn("predictions", "--from-beginning", "--json", "--max", "1440", "--idle-exit", "90", env=env,
                        timeout=300)
    assert printed.returncode == 0, printed.stderr
    ids = {json.loads(line)["prediction_id"] for line in printed.stdout.splitlines()}
    assert len(ids) == 1440
    log = worker.log_path.read_text()
    assert SCRAM[1] not in log and KEY_PASSWORD not in log


def test_plain_mechanism_and_the_ssl_only_listener(secure_broker):
    ports, certificates = secure_broker
    result = livelearn("topics", "list", env=tls_env(certificates, ports["sasl_ssl"], "SASL_SSL", PLAIN, "PLAIN"),
                       timeout=120)
    assert result.returncode == 0, result.stderr
    result = livelearn("topics", "list", env=tls_env(certificates, ports["ssl"], "SSL"), timeout=120)
    assert result.returncode == 0, result.stderr


def test_refusals_are_named_for_what_they_are(secure_broker):
    ports, certificates = secure_broker
    wrong = tls_env(certificates, ports["sasl_ssl"], "SASL_SSL", (SCRAM[0], "not-the-password"))
    for command in (("topics", "list"), ("worker",)):
        result = livelearn(*command, env=wrong, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "authentication failed at 127.0.0.1" in result.stderr
        assert "not-the-password" not in result.stderr
    # Plaintext spoken to a TLS listener: the handshake is what failed, not the broker's presence.
    result = livelearn("topics", "list", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['ssl']}",
                                              "KAFKA_SECURITY_PROTOCOL": "SSL"}, timeout=120)
    assert result.returncode == 2 and "TLS handshake with" in result.stderr, result.stderr
    # Nothing listening: the broker does not answer, and the message says so.
    result = livelearn("topics", "list", env={**wrong, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
                       timeout=120)
    assert result.returncode == 2 and "no Kafka broker answers" in result.stderr, result.stderr
