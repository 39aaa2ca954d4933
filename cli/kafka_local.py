"""A real single-node Apache Kafka broker (KRaft) run from the official jars on Maven Central.

The jars are fetched once with Maven into ``<home>/kafka-<version>/libs`` (outside the work tree), the
broker's storage is formatted once, and the broker runs as a detached JVM whose pid is kept in
``<home>/broker-<port>/broker.pid`` so that ``down`` stops exactly the process ``up`` started.
"""

from __future__ import annotations

import base64
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from agents.settings import Settings

SLF4J_VERSION = "1.7.36"
RELOAD4J_VERSION = "1.2.25"


# What the jar folder holds besides the broker; a folder fetched for an older layout is fetched again.
LIBS_LAYOUT = "broker+tools"
# Kafka's own command-line tools (kafka-tools), by the name of their shell script without .sh.
KAFKA_TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
}
TOOLS_LOG4J = "log4j.rootLogger=WARN, stderr\nlog4j.appender.stderr=org.apache.log4j.ConsoleAppender\n" \
              "log4j.appender.stderr.Target=System.err\nlog4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n" \
              "log4j.appender.stderr.layout.ConversionPattern=%p %m%n\n"


# Ports handed out by free_port: the lock file of each stays open (locked) while this process lives.
_RESERVED: dict[int, int] = {}
# Where free_port looks: below Linux's default ephemeral range (32768-60999), so that no outgoing
# connection (a Kafka client's, say) is given the port between the check and the server's bind.
PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, for a broker or a worker a test or benchmark
    starts. ``bind(("127.0.0.1", 0))`` alone is not enough when two test processes run side by side:
    its port comes from the ephemeral range, where the kernel may hand it to an outgoing connection
    before the server binds it, and two processes may be handed the same one. Each port given out here
    is reserved with an exclusive lock on a file named after it (released when this process ends), so
    another process that uses this function skips it."""
    # One folder per user: another user's lock files could not be opened.
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"livelearn-ports-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*PORT_RANGE)
        if port in _RESERVED:
            continue
        try:
            fd = os.open(folder / str(port), os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                os.close(fd)
                continue
        _RESERVED[port] = fd
        return port
    raise BrokerError(f"no free port found in {PORT_RANGE[0]}-{PORT_RANGE[1]} after 200 tries")


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes in URL-safe base64, as Kafka's ``Uuid.randomUuid()`` makes
    them, and like it never starting with "-": kafka-storage's argument parser takes such an id for an
    option ("argument --cluster-id/-t: expected one argument"), which failed about one broker start in
    64 (seen in CI)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class BrokerError(RuntimeError):
    """A problem the user can act on; the CLI prints it as one line and exits non-zero."""


POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>livelearn</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>ch.qos.reload4j</groupId><artifactId>reload4j</artifactId><version>{reload4j}</version></dependency>
  </dependencies>
</project>
"""

LOG4J_PROPERTIES = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
"""


@dataclass(frozen=True)
class SecureListeners:
    """TLS listeners beside the plaintext one: ``SASL_SSL`` (PLAIN and SCRAM-SHA-256 users) and
    ``SSL``, both with mutual TLS when ``client_auth`` is ``required``. The tests start a second
    broker with these to run the pipeline over TLS; the certificates come from the caller.

    ``keystore``: PEM file with the broker's unencrypted PKCS#8 key and its certificate chain;
    ``truststore``: PEM file of the CA certificates that sign client certificates.
    """

    sasl_ssl_port: int
    ssl_port: int
    keystore: Path
    truststore: Path
    plain_users: tuple[tuple[str, str], ...] = ()
    scram_users: tuple[tuple[str, str], ...] = ()
    client_auth: str = "required"

    def properties(self) -> dict[str, str]:
        plain = " ".join(f'user_{user}="{password}"' for user, password in self.plain_users)
        return {
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain};",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
            "ssl.client.auth": self.client_auth,
        }

    def scram_arguments(self) -> list[str]:
        """StorageTool arguments that write the SCRAM credentials when the storage is formatted (KRaft
        keeps them in the metadata log)."""
        out = []
        for user, password in self.scram_users:
            out += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        return out


@dataclass
class LocalBroker:
    settings: Settings
    secure: SecureListeners | None = None

    @property
    def port(self) -> int:
        return self.settings.local_broker.kafka_port

    @property
    def controller_port(self) -> int:
        return self.settings.local_broker.kafka_controller_port

    @property
    def runtime_dir(self) -> Path:
        return self.settings.local_broker.home / f"kafka-{self.settings.kafka_version}"

    @property
    def libs_dir(self) -> Path:
        return self.runtime_dir / "libs"

    @property
    def broker_dir(self) -> Path:
        return self.settings.local_broker.home / f"broker-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.broker_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.broker_dir / "server.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _say(self, message: str) -> None:
        print(f"kafka: {message}", file=sys.stderr, flush=True)

    def ensure_jars(self) -> None:
        marker = self.libs_dir / ".complete"
        expected = f"{self.settings.kafka_version} {LIBS_LAYOUT}"
        if marker.exists() and marker.read_text() == expected:
            return
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                raise BrokerError(
                    f"'{tool}' is not on PATH. The local broker needs Java 17 and Maven "
                    "(Debian: apt-get install openjdk-17-jre-headless maven), or use docker compose up."
                )
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        pom = self.runtime_dir / "pom.xml"
        pom.write_text(
            POM_TEMPLATE.format(kafka=self.settings.kafka_version, slf4j=SLF4J_VERSION, reload4j=RELOAD4J_VERSION)
        )
        self._say(f"fetching Apache Kafka {self.settings.kafka_version} jars with Maven into {self.libs_dir}")
        tmp = self.runtime_dir / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        result = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"Maven could not fetch the Kafka jars:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        tmp.rename(self.libs_dir)
        marker.write_text(expected)

    def _classpath(self) -> str:
        return str(self.libs_dir / "*")

    def _java(self, main: str, *args: str, log_config: Path) -> list[str]:
        return [
            "java", f"-Xmx{self.settings.kafka_heap}", "-Xms128m", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log_config}", f"-Dkafka.logs.dir={self.broker_dir}",
            "-cp", self._classpath(), main, *args,
        ]

    def write_config(self) -> Path:
        self.broker_dir.mkdir(parents=True, exist_ok=True)
        data_dir = self.broker_dir / "data"
        listeners = {"PLAINTEXT": self.port}
        if self.secure is not None:
            listeners.update({"SASL_SSL": self.secure.sasl_ssl_port, "SSL": self.secure.ssl_port})
        advertised = ",".join(f"{name}://127.0.0.1:{port}" for name, port in listeners.items())
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"{advertised},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(["CONTROLLER:PLAINTEXT",
                                                        *(f"{name}:{name}" for name in listeners)]),
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            # Replayed history carries years-old event-time timestamps: keep by default (topics the
            # project creates set retention explicitly; this covers auto-created ones).
            "log.retention.ms": "-1",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.flush.interval.messages": str(2**62),
        }
        if self.secure is not None:
            props.update(self.secure.properties())
        path = self.broker_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.broker_dir / "log4j.properties").write_text(LOG4J_PROPERTIES.format(log=self.log_file))
        return path

    def _format_storage(self, config: Path) -> None:
        if (self.broker_dir / "data" / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
                       *(self.secure.scram_arguments() if self.secure is not None else []),
                       log_config=self.broker_dir / "log4j.properties"),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting the broker storage failed:\n{result.stdout}{result.stderr}")

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A recycled pid belongs to some other program; ours runs kafka.Kafka.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"kafka.Kafka" not in cmdline:
                return None
        except OSError:
            pass
        return pid

    def port_in_use(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def accepts_clients(self, timeout: float = 2.0) -> bool:
        # A plain TCP probe first: librdkafka logs every refused connection loudly.
        if not self.port_in_use(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=timeout)
            return bool(metadata.brokers)
        except Exception:
            return False

    def up(self, wait_s: float = 300.0) -> None:
        pid = self.pid()
        if pid is not None and self.accepts_clients():
            self._say(f"already running (pid {pid}) on {self.bootstrap}")
            return
        for port in (self.port, self.controller_port):
            if pid is None and self.port_in_use(port):
                if port == self.port and self.accepts_clients():
                    self._say(f"a broker not started by livelearn already answers on {self.bootstrap}; using it")
                    return
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is taken by another program; free it or set "
                    "LIVELEARN_KAFKA_PORT / LIVELEARN_KAFKA_CONTROLLER_PORT"
                )
        process = None
        if pid is None:
            self.ensure_jars()
            config = self.write_config()
            self._format_storage(config)
            log = open(self.broker_dir / "stdout.log", "ab")
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(config), log_config=self.broker_dir / "log4j.properties"),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            pid = process.pid
            self.pid_file.write_text(str(pid))
            self._say(f"starting Apache Kafka {self.settings.kafka_version} (pid {pid}) on {self.bootstrap}")
        started = time.monotonic()
        deadline, next_note = started + wait_s, started + 15
        while time.monotonic() < deadline:
            if time.monotonic() >= next_note:
                # A broker with many partitions on disk loads each log before it answers.
                partitions = sum(1 for _ in (self.broker_dir / "data").glob("*-[0-9]*"))
                self._say(f"still starting after {time.monotonic() - started:.0f} s "
                          f"({partitions} partition directories in {self.broker_dir / 'data'})")
                next_note += 15
            exited = process.poll() is not None if process is not None else self.pid() is None
            if exited:
                raise BrokerError(f"the broker exited during start-up; see {self.log_file} and {self.broker_dir / 'stdout.log'}")
            if self.accepts_clients():
                self._say(f"ready on {self.bootstrap} (pid {pid})")
                return
            time.sleep(0.5)
        raise BrokerError(f"the broker did not accept clients within {wait_s:.0f} s; see {self.log_file}")

    def down(self, wait_s: float = 30.0) -> bool:
        pid = self.pid()
        if pid is None:
            self._say("not running")
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            self._say(f"pid {pid} did not stop in {wait_s:.0f} s; killing it")
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.pid_file.unlink(missing_ok=True)
        self._say(f"stopped (pid {pid})")
        return True

    def status(self) -> bool:
        pid = self.pid()
        if pid is None:
            self._say(f"not running (no live pid in {self.pid_file})")
            return False
        if self.accepts_clients():
            self._say(f"running, pid {pid}, accepting clients on {self.bootstrap}")
            return True
        self._say(f"pid {pid} is alive but {self.bootstrap} does not answer yet")
        return False

    def run_tool(self, tool: str, arguments: list[str]) -> int:
        """Run one of Kafka's own tools (``KAFKA_TOOLS`` name, or a main class) with the broker's jars,
        as ``kafka-run-class.sh`` would; returns its exit code."""
        main = KAFKA_TOOLS.get(tool, tool)
        if "." not in main:
            raise BrokerError(f"unknown tool {tool!r}; choose from {', '.join(KAFKA_TOOLS)} or give a main class")
        self.ensure_jars()
        config = self.runtime_dir / "tools-log4j.properties"
        config.write_text(TOOLS_LOG4J)
        command = ["java", "-Xmx256m", f"-Dlog4j.configuration=file:{config}", "-cp", self._classpath(), main,
                   *arguments]
        return subprocess.run(command).returncode

    def logs(self, lines: int = 50) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def delete_topics_containing(bootstrap: str, marker: str) -> list[str]:
    """Delete the topics whose names contain ``marker`` (a test's or benchmark's run id; Faust's
    changelogs carry it through the app id) and return their names. Runs that leave their topics
    make the local broker slower to start with each one: it loads every partition first."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    names = [name for name in admin.list_topics(timeout=10).topics if marker in name]
    for name, future in (admin.delete_topics(names, operation_timeout=30) if names else {}).items():
        try:
            future.result(timeout=60)
        except Exception as exc:  # a leftover topic is untidy, not a failure of the run
            print(f"could not delete topic {name}: {exc}", file=sys.stderr)
    return names
