"""Local mode: read pulls straight from a containerd socket, no cluster needed."""

from __future__ import annotations

import socket
import time

from pulltrace.agent.containerd import ContentClient
from pulltrace.agent.tracker import Tracker
from pulltrace.model import PullStatus


def sample(address: str, namespace: str, interval: float) -> list[PullStatus]:
    """Two samples ``interval`` apart, so speeds and ETAs are measured, not guessed.

    Raises ContainerdError (one line) when the socket cannot be used.
    """
    with ContentClient(address, namespace) as client:
        client.check()
        tracker = Tracker(client, socket.gethostname())
        tracker.poll()
        time.sleep(interval)
        return tracker.poll()
