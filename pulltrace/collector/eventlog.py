"""One JSON log line per lifecycle event, in the ``PullEvent`` v1 shape (its fields at the top
level of the line), so a log pipeline can keep pull history without scraping the API.

Pull-level events log at info; layer events at debug, since an image has a dozen layers and a
busy cluster would drown its logs in them. Progress is never logged: the API has it.
"""

from __future__ import annotations

import logging

import msgspec

from pulltrace.model import PullEvent

log = logging.getLogger("pulltrace.collector.events")


def log_event(event: PullEvent) -> None:
    """A store listener."""
    if event.type == "pull.progress":
        return
    level = logging.DEBUG if event.type.startswith("layer.") else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, event.type, extra=msgspec.to_builtins(event))
