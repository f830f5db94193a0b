"""Local mode: read pulls straight from a containerd socket, no cluster needed."""

from __future__ import annotations

import socket
import sys
import time

from pulltrace.containerd import ContainerdError, ContentClient
from pulltrace.model import PullStatus
from pulltrace.tracker import Tracker


def sample(address: str, namespace: str, interval: float) -> list[PullStatus] | None:
    """Two samples ``interval`` apart, so speeds and ETAs are measured, not guessed.

    Returns None after printing one line to stderr when the socket cannot be used.
    """
    with ContentClient(address, namespace) as client:
        try:
            client.check()
            tracker = Tracker(client, socket.gethostname())
            tracker.poll()
            time.sleep(interval)
            return tracker.poll()
        except ContainerdError as err:
            print(f"pulltrace: {err}", file=sys.stderr)
            return None
