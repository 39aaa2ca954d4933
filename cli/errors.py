"""User-facing failures of the command line, and the broker check every command shares."""

from __future__ import annotations

from agents.settings import Settings


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def require_broker(settings: Settings, timeout: float = 8.0) -> None:
    """Turn an unreachable broker into one clear line and exit code 2."""
    from confluent_kafka.admin import AdminClient

    config = settings.client_config()
    config["socket.connection.setup.timeout.ms"] = str(int(timeout * 1000))
    config["log_level"] = 0  # the refused connections are summarised in one line below
    try:
        metadata = AdminClient(config).list_topics(timeout=timeout)
        if metadata.brokers:
            return
    except Exception:
        pass
    raise CliError(
        f"no Kafka broker answers at {settings.bootstrap_servers}. Start the local one with "
        "'livelearn kafka up' (or 'docker compose up -d kafka'), or set KAFKA_BOOTSTRAP_SERVERS.",
        code=2,
    )
