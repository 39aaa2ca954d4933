"""User-facing failures of the command line, and the broker check every command shares."""

from __future__ import annotations

from agents.settings import Settings


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


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
