"""``PullStore.restore``: finished pulls from the history database come back into the live store
after a restart, silently, until they expire as if the collector had never stopped."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from pulltrace.model import PullEvent
from pulltrace.pullstore import PullStore
from tests.collector.conftest import T0, Clock, layer, pull, report


def test_recent_finished_pulls_come_back_and_expire_on_time() -> None:
    clock = Clock(T0.timestamp() + 600)  # ten minutes after the pulls began
    store = PullStore(1800.0, clock=clock)
    events: list[PullEvent] = []
    store.add_listener(events.append)
    done = pull("a1", layers=[layer(0, done=1000)])
    old = pull("a0", layers=[layer(0, done=1000)], started=T0 - timedelta(hours=2))
    old = msgspec.structs.replace(old, completed_at=T0 - timedelta(hours=2))
    active = pull("a2", layers=[layer(0, done=10)])
    assert store.restore([done, old, active, done]) == 1  # once; not the old or active one
    assert [p.id for p in store.pulls()] == ["a1"] and events == []
    assert store.nodes() == []  # no agent has reported since the restart
    # The agent still lists the pull: it joins the restored one, no second row, no event.
    store.apply_report(report("node-a", [done], at=600))
    assert [p.id for p in store.pulls()] == ["a1"]
    assert [e.type for e in events if e.pull.id == "a1"] == []
    clock.advance(1800 - 600 + 1)  # 30 minutes after the pull completed
    store.tick()
    assert store.pulls() == []
    assert [e.type for e in events if e.pull.id == "a1"] == ["pull.removed"]
