"""``pulltrace wait``: the CI step after ``kubectl apply`` that blocks until the selected pods'
images are on their nodes, and says in plain lines what it is waiting for.

What each container needs comes from the pods themselves when a cluster is configured (so an
image already present counts as done the moment the container starts); pulls from any source
give the progress and the failure reasons. Without a cluster (``--server`` or ``--demo``),
the needs are the pulls the collector has matched to the selected pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, TypeVar

from pulltrace import render
from pulltrace.client.connect import Plan
from pulltrace.client.source import ConnectionState, Snapshot
from pulltrace.client.store import ClientStore, degraded
from pulltrace.errors import EXIT_FAILED, EXIT_PULLED, EXIT_TIMEOUT, UsageError
from pulltrace.kube.api import PodLister
from pulltrace.kube.pods import Pod
from pulltrace.model import ACTIVE_PHASES, PullStatus

POD_POLL = 2.0
# Image-pull failures beyond kubelet's ErrImagePull/ImagePullBackOff that never resolve alone.
NEVER_PULLABLE = frozenset({"InvalidImageName", "ErrImageNeverPull"})
NeedState = Literal["pending", "pulled", "failed"]
T = TypeVar("T")


@dataclass(frozen=True)
class Selection:
    namespace: str = ""
    selector: str = ""
    pods: tuple[str, ...] = ()
    image: str = ""  # substring of the image reference

    def describe(self) -> str:
        what = f"-l {self.selector}" if self.selector else " ".join(self.pods) or "all pods"
        where = f" in {self.namespace}" if self.namespace else ""
        image = f", images matching {self.image!r}" if self.image else ""
        return f"{what}{where}{image}"


@dataclass
class Need:
    """One container's image on one node."""

    namespace: str
    pod: str
    container: str
    image: str
    node: str
    state: NeedState = "pending"
    reason: str = ""
    pull: PullStatus | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.image)

    def where(self) -> str:
        """``<image> on <node>``, each escaped and bounded for the terminal."""
        node = render.node_text(self.node) if self.node else "(unscheduled)"
        return f"{render.printable(self.image, render.REF_MAX)} on {node}"


def needs_from_pods(pods: Iterable[Any], selection: Selection) -> list[Need]:
    """``pods`` are ``pulltrace.kube.pods.Pod``; the state here is what the pod alone says."""
    needs = []
    for pod in pods:
        for c in pod.containers:
            if selection.image and selection.image not in c.image:
                continue
            need = Need(pod.namespace, pod.name, c.name, c.image, pod.node)
            if c.state in ("running", "terminated") or c.digest:
                need.state = "pulled"
            elif c.pull_failed or c.reason in NEVER_PULLABLE:
                need.state, need.reason = "failed", c.message or c.reason
            elif not c.not_running:
                need.state = "pulled"  # e.g. CreateContainerConfigError: the image is there
            elif not pod.node:
                need.reason = "not scheduled yet"
            needs.append(need)
    return needs


def needs_from_pulls(pulls: Iterable[PullStatus], selection: Selection) -> list[Need]:
    needs = []
    for pull in pulls:
        image = pull.image_ref or pull.repository
        if selection.image and selection.image not in image:
            continue
        for pod in pull.pods:
            if selection.namespace and pod.namespace != selection.namespace:
                continue
            if selection.pods and pod.pod_name not in selection.pods:
                continue
            needs.append(Need(pod.namespace, pod.pod_name, pod.container, image, pull.node_name))
            break
    return needs


def apply_pulls(needs: list[Need], pulls: Sequence[PullStatus]) -> None:
    """A completed pull of the image on the node satisfies a need; a failed one fails it
    unless the pod already shows the image (kubelet may have retried successfully)."""
    from pulltrace.kube.refs import agent_repo_key, repo_key

    by_node: dict[tuple[str, str], list[PullStatus]] = {}
    for pull in pulls:
        if pull.repository:
            by_node.setdefault((pull.node_name, agent_repo_key(pull.repository)), []).append(pull)
    for need in needs:
        try:
            key = (need.node, repo_key(need.image))
        except ValueError:
            need.state, need.reason = "failed", f"invalid image reference {need.image!r}"
            continue
        candidates = by_node.get(key)
        if not candidates:
            continue
        latest = max(candidates, key=lambda p: p.started_at or datetime.min.replace(tzinfo=UTC))
        need.pull = latest
        if need.state != "pending":
            continue
        if latest.phase == "completed":
            need.state = "pulled"
        elif latest.phase == "failed":
            need.state, need.reason = "failed", latest.error or "pull failed"


@dataclass
class Printer:
    """Plain lines, at most one per pull every ``interval`` seconds; GitHub Actions markup when
    running there."""

    out: TextIO = sys.stdout
    interval: float = 5.0
    github: bool = False
    clock: Callable[[], float] = time.monotonic
    _last: dict[tuple[str, str], float] = field(default_factory=dict)
    _said: set[tuple[str, str, str]] = field(default_factory=set)

    def line(self, text: str) -> None:
        """One timestamped line. Its fields are escaped where they are put in; escaping the
        whole line again is a bound, and changes nothing that is already safe."""
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        self.out.write(f"{stamp} {render.printable(text, render.LINE_MAX)}\n")
        self.out.flush()

    def raw(self, text: str) -> None:
        self.out.write(render.printable(text, render.LINE_MAX) + "\n")
        self.out.flush()

    def once(self, need: Need, what: str, text: str) -> None:
        key = (need.node, need.image, what)
        if key not in self._said:
            self._said.add(key)
            self.line(text)

    def progress(self, need: Need, trouble: str = "") -> None:
        """A pending need's pull as it goes; ``trouble`` is why its node's agent cannot see
        it go (containerd unreachable), which is said even before the pull shows."""
        pull = need.pull
        active = pull is not None and pull.phase in ACTIVE_PHASES
        if not (active or trouble):
            return
        now = self.clock()
        if now - self._last.get(need.key, -1e18) < self.interval:
            return
        self._last[need.key] = now
        suffix = f"; node {render.message_text(trouble)}" if trouble else ""
        if pull is None or not active:
            self.line(f"waiting for {need.where()}{suffix}")
            return
        if pull.total_known:
            detail = (
                f"{render.percent_text(pull.percent)} "
                f"{render.size_text(pull, with_cached=False)} "
                f"{render.speed_text(pull.bytes_per_sec)} "
                f"ETA {render.duration_text(pull.eta_seconds)}"
            )
        else:
            detail = "pulling (no byte progress without the collector's agent on this node)"
        self.line(f"pulling {need.where()}: {detail}{suffix}")


def report(needs: list[Need], printer: Printer, troubles: Mapping[str, str] | None = None) -> None:
    """``troubles``: node name -> why its agent cannot read containerd."""
    troubles = troubles or {}
    for need in needs:
        where = need.where()
        if need.state == "pulled":
            pull = need.pull
            took = ""
            if pull and pull.phase == "completed" and pull.started_at and pull.completed_at:
                took = f" in {render.timing_text(pull, pull.completed_at)}"
                if pull.total_known:
                    took += f" ({render.bytes_text(pull.total_bytes)})"
            printer.once(need, "pulled", f"pulled {where}{took}")
        elif need.state == "failed":
            printer.once(need, "failed", f"FAILED {where}: {render.message_text(need.reason)}")
        else:
            printer.progress(need, troubles.get(need.node, ""))


def summary_markdown(needs: list[Need], verdict: str) -> str:
    """``needs`` are deduplicated: one row per image and node."""
    rows = ["| image | node | pods | state |", "| --- | --- | --- | --- |"]
    for need in sorted(needs, key=lambda n: n.key):
        state = need.state + (f": {_cell(need.reason, render.MESSAGE_MAX)}" if need.reason else "")
        image, node = _cell(need.image, render.REF_MAX), _cell(need.node) or "-"
        pod = _cell(f"{need.namespace}/{need.pod}")
        rows.append(f"| `{image}` | {node} | {pod} | {state} |")
    return f"### pulltrace wait: {verdict}\n\n" + "\n".join(rows) + "\n"


def _cell(text: str, limit: int = render.NAME_MAX) -> str:
    """A Markdown table cell: escaped, bounded, and with no ``|`` or backtick to end it."""
    return render.printable(text, limit).replace("|", "\\|").replace("`", "'")


def error_annotation(need: Need) -> str:
    """The GitHub Actions error for a failed need. Its message is escaped for the terminal,
    so it has no line break to start a workflow command of its own, then ``%`` is escaped as
    the runner unescapes it."""
    message = f"{need.where()}: {render.message_text(need.reason)}"
    return f"::error title=Image pull failed::{message.replace('%', '%25')}"


def dedupe(needs: list[Need]) -> list[Need]:
    """One line per image and node, however many pods share it."""
    seen: dict[tuple[str, str], Need] = {}
    for need in needs:
        kept = seen.get(need.key)
        if kept is None or _worse(need, kept):
            seen[need.key] = need
    return list(seen.values())


def _worse(a: Need, b: Need) -> bool:
    order = {"failed": 0, "pending": 1, "pulled": 2}
    return order[a.state] < order[b.state]


def _troubles(store: ClientStore) -> dict[str, str]:
    """Per troubled node, its state and why: ``degraded: containerd unreachable at …``."""
    return {n.node_name: f"{n.state}: {n.error}" for n in degraded((store.nodes or {}).values())}


def _pod_lister(plan: Plan, selection: Selection) -> PodLister | None:
    """The selected pods' lister with the user's credentials, None without a cluster."""
    if plan.cluster is None:
        return None
    return PodLister(
        plan.cluster.api_client,
        selection.namespace or "default",
        names=selection.pods,
        selector=selection.selector,
    )


async def wait(
    plan: Plan,
    selection: Selection,
    timeout: float,
    printer: Printer,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """``timeout`` is a hard deadline: the source's first listing, the pod listings and the
    stream all stop with it, however slowly a server answers."""
    store = ClientStore()
    lister = _pod_lister(plan, selection)
    if lister is None and selection.selector:
        raise UsageError("-l needs cluster access (a kubeconfig); name pods instead")
    deadline = clock() + timeout
    source = plan.source([selection.namespace] if selection.namespace else [])
    try:
        # first: a source that is not there at all fails fast (SourceError, exit 3)
        first: Snapshot | None = await _within(deadline - clock(), source.list_once)
    except TimeoutError:
        first = None
    link: list[ConnectionState] = []

    async def consume() -> None:
        async for message in source:
            if isinstance(message, ConnectionState):
                if link and link[-1].state != message.state and message.state != "live":
                    printer.line(f"source {message.state}: {render.message_text(message.detail)}")
                link.append(message)
            else:
                store.apply(message)

    github = printer.github
    if github:
        printer.raw(f"::group::pulltrace wait: {selection.describe()}")
    printer.line(f"waiting for the images of {selection.describe()} ({plan.kind} source)")
    if plan.notice:
        printer.line(plan.notice)
    needs: list[Need] = []
    verdict, code = "timed out", EXIT_TIMEOUT
    if first is not None:
        store.apply(first)
        consumer = asyncio.create_task(consume())
        try:
            last_pods: list[Pod] = []
            next_list = 0.0
            while clock() < deadline:
                if consumer.done():
                    consumer.result()  # a source that ended by an error: surface it
                    break
                if lister is not None and clock() >= next_list:
                    try:
                        last_pods = await _within(deadline - clock(), lister.list)
                    except TimeoutError:
                        break
                    next_list = clock() + POD_POLL
                pulls = store.pulls()
                if lister is not None:
                    needs = needs_from_pods(last_pods, selection)
                else:
                    needs = needs_from_pulls(pulls, selection)
                apply_pulls(needs, pulls)
                needs = dedupe(needs)
                report(needs, printer, _troubles(store))
                if any(n.state == "failed" for n in needs):
                    verdict, code = "a pull failed", EXIT_FAILED
                    break
                if needs and all(n.state == "pulled" for n in needs):
                    verdict, code = "all images pulled", EXIT_PULLED
                    break
                await asyncio.sleep(min(1.0, max(0.0, deadline - clock())))
        finally:
            consumer.cancel()
    if code == EXIT_TIMEOUT:
        waiting = [n for n in needs if n.state == "pending"]
        if first is None:
            printer.line(f"timed out: no answer from {source.description}")
        elif not needs:
            printer.line(f"timed out: nothing matched {selection.describe()}")
        troubles = _troubles(store)
        for need in waiting:
            pull = need.pull
            if pull:
                state = f"{pull.phase} {render.percent_text(pull.percent)}"
            else:
                state = render.message_text(need.reason) if need.reason else "not started"
            trouble = troubles.get(need.node)
            if trouble:
                state += f"; node {render.message_text(trouble)}"
            printer.line(f"timed out: still waiting for {need.where()}: {state}")
    else:
        printer.line(verdict)
    if github:
        printer.raw("::endgroup::")
        for need in needs:
            if need.state == "failed":
                printer.raw(error_annotation(need))
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(summary_markdown(needs, verdict))
    return code


async def _within(seconds: float, call: Callable[[], T]) -> T:
    """``call()`` in a daemon thread, given at most ``seconds`` (TimeoutError after that).
    The blocking reads it runs (a source's one-shot listing, the pod listing) then cannot hold
    ``wait`` past its deadline, nor its exit, as a worker of asyncio's own pool would: the
    loop joins those when it closes."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # given up on: the deadline passed
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as err:
            error = err
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="pulltrace-wait-read", daemon=True).start()
    return await asyncio.wait_for(future, max(0.0, seconds))
