"""User-facing failures of the command line, and the broker check every command shares."""

from __future__ import annotations

import sys

from agents.settings import Settings


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def require_copartitioned(settings: Settings) -> int:
    """The input topics' one partition count, asked once they were created (it waits for the broker
    to list them); exit 2 with each count and the command that fixes them where they differ
    (agents.topics.copartitioned), as the worker and the backtest both refuse to run split."""
    from agents.topics import InputTopicsNotListed, NotCoPartitioned, copartitioned, input_partition_counts

    try:
        return copartitioned(input_partition_counts(settings, every=True))
    except NotCoPartitioned as exc:
        raise CliError(str(exc), code=2) from None
    except InputTopicsNotListed as exc:
        raise CliError(str(exc)) from None


def require_broker(settings: Settings, timeout: float = 8.0) -> None:
    """Turn an unreachable broker into one clear line and exit code 2, telling apart a broker that
    refused our credentials and a TLS handshake that failed from a broker that does not answer."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list = []
    config = settings.client_config()
    config["socket.connection.setup.timeout.ms"] = str(int(timeout * 1000))
    config["log_level"] = 0  # the refused connections are summarised in one line below
    config["error_cb"] = errors.append
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=timeout)
        if metadata.brokers:
            return
    except KafkaException as exc:
        errors.append(exc.args[0])
    except Exception:
        pass
    admin.poll(1.0)  # librdkafka hands connection errors (authentication, TLS) to error_cb only here
    raise CliError(broker_problem(settings, errors), code=2)


def broker_problem(settings: Settings, errors: list) -> str:
    """One line for what librdkafka reported while trying to reach the brokers."""
    from confluent_kafka import KafkaError

    def first(*codes: int):
        return next((e for e in errors if isinstance(e, KafkaError) and e.code() in codes), None)

    where = settings.bootstrap_servers
    refused = first(KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
    if refused is not None:
        return (f"authentication failed at {where}: the broker answered and refused the credentials "
                f"({refused.str()}). Check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD "
                "(or the client certificate).")
    handshake = first(KafkaError._SSL)
    if handshake is not None:
        return (f"TLS handshake with {where} failed ({handshake.str()}). Check KAFKA_SECURITY_PROTOCOL, "
                "KAFKA_SSL_CA_LOCATION and the client certificate settings.")
    return (f"no Kafka broker answers at {where}. Start the local one with 'livelearn kafka up' "
            "(or 'docker compose up -d kafka'), or set KAFKA_BOOTSTRAP_SERVERS.")


def require_transaction_timeout(settings: Settings, timeout: float = 10.0) -> None:
    """In exactly-once mode, refuse to start a worker whose transaction timeout the brokers would refuse.

    A broker refuses a transactional producer whose ``transaction.timeout.ms`` exceeds its own
    ``transaction.max.timeout.ms`` (15 minutes by default), and only when the producer is created: the
    worker crashed at its first output with librdkafka's INVALID_TRANSACTION_TIMEOUT, which names no
    setting of ours. Read the limit of every broker once at start instead. A broker that does not let us
    read its configuration (an ACL without DescribeConfigs) is not a reason to refuse: say so and go on.
    """
    if not settings.worker.exactly_once:
        return
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    wanted_ms = int(settings.worker.transaction_timeout_s * 1000)
    admin = AdminClient(settings.client_config())
    try:
        brokers = admin.list_topics(timeout=timeout).brokers
        resources = [ConfigResource(ConfigResource.Type.BROKER, str(broker_id)) for broker_id in sorted(brokers)]
        limits = []
        for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
            entry = future.result(timeout=timeout).get("transaction.max.timeout.ms")
            if entry is not None and entry.value is not None:
                limits.append((int(entry.value), resource.name))
    except (KafkaException, ValueError, TimeoutError) as exc:
        print(f"livelearn: could not read the brokers' transaction.max.timeout.ms ({exc}); "
              f"starting with LIVELEARN_TRANSACTION_TIMEOUT_S={settings.worker.transaction_timeout_s:g} unchecked",
              file=sys.stderr)
        return
    if not limits:
        return
    limit_ms, broker = min(limits)
    if wanted_ms > limit_ms:
        raise CliError(f"LIVELEARN_TRANSACTION_TIMEOUT_S ({settings.worker.transaction_timeout_s:g} s) is longer than "
                       f"broker {broker}'s transaction.max.timeout.ms ({limit_ms / 1000:g} s), so the broker would "
                       "refuse the worker's transactional producers at their first output. Lower "
                       "LIVELEARN_TRANSACTION_TIMEOUT_S (it must stay at least twice "
                       "LIVELEARN_MODEL_CHECKPOINT_SECONDS) or raise the broker's limit.", code=2)
