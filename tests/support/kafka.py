"""A real Kafka broker for tests: `compose/kafka/broker` in a temporary directory.

Set `NGPU_TEST_KAFKA_BOOTSTRAP=host:port` to use a broker that already runs instead
(it must be on loopback and allow topic creation).
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "compose" / "kafka" / "broker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class KafkaBroker:
    """A single-node KRaft broker whose data lives in `directory`; `None` when the
    broker is external (then it cannot be restarted by tests)."""

    bootstrap: str
    directory: Path | None

    @classmethod
    def start_in(cls, directory: Path) -> KafkaBroker:
        external = os.environ.get("NGPU_TEST_KAFKA_BOOTSTRAP")
        if external:
            return cls(external, None)
        out = subprocess.run(
            [str(SCRIPT), "start", str(directory), str(_free_port())],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        return cls(out.stdout.strip().splitlines()[-1], directory)

    def stop(self) -> None:
        if self.directory is not None:
            subprocess.run([str(SCRIPT), "stop", str(self.directory)], check=True, timeout=60)

    def restart(self) -> None:
        """Start again after `stop()`, on the same data and port."""
        assert self.directory is not None, "an external broker cannot be restarted"
        subprocess.run([str(SCRIPT), "start", str(self.directory)], check=True, timeout=300)
