"""Fixtures for end-to-end tests against a real containerd, registry and throttling proxy.

Off CI, a machine without root or the daemons skips these tests; on CI (``CI`` set) it fails
them, because an end-to-end suite that silently skips proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from testkit.containerd import Containerd, ContainerdError, selected_release
from testkit.images import ImagePusher
from testkit.proxy import ThrottleProxy
from testkit.registry import REGISTRY_BIN, Registry
from testkit.util import MiB, tail
from tests.report_sink import ReportSink, serve_sink

DEFAULT_THROTTLE = 2 * MiB  # bytes/s: a few-MiB image takes a couple of seconds to pull


def e2e_unavailable() -> str | None:
    """Why this machine cannot run the end-to-end tests, or None when it can."""
    if os.geteuid() != 0:
        return "end-to-end tests need root (containerd)"
    missing = [b for b in (REGISTRY_BIN,) if not os.access(b, os.X_OK)]
    if missing:
        need = ", ".join(missing)
        return f"end-to-end tests need {need} (apt-get install containerd docker-registry)"
    try:
        selected_release()
    except ContainerdError as err:
        return str(err)
    return None


def pytest_report_header() -> str:
    """Which containerd the e2e tests ran against, in every run's log."""
    try:
        release = selected_release()
    except ContainerdError as err:
        return f"containerd: {err}"
    return f"containerd: {release.version} ({release.series}, {release.bin_dir})"


def require_e2e() -> None:
    reason = e2e_unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI must run the end-to-end tests, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    require_e2e()
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def containerd(registry: Registry) -> Iterator[Containerd]:
    """One daemon for the session (it starts in well under a second, but state builds up)."""
    require_e2e()
    with Containerd() as daemon:
        daemon.add_registry_host(registry.host_port)
        yield daemon


@pytest.fixture
def fresh_containerd(registry: Registry) -> Iterator[Containerd]:
    """A private daemon with an empty content store, for tests that break or need isolation."""
    require_e2e()
    with Containerd() as daemon:
        daemon.add_registry_host(registry.host_port)
        yield daemon


@pytest.fixture
def throttle(registry: Registry, containerd: Containerd) -> Iterator[ThrottleProxy]:
    """A fresh proxy per test (tests kill it or change its rate), known to the session daemon.

    Pull through it with ``image.ref_at(throttle.host_port)``.
    """
    with ThrottleProxy(registry.host_port, rate=DEFAULT_THROTTLE) as proxy:
        containerd.add_registry_host(proxy.host_port)
        yield proxy


@pytest.fixture
def throttled_containerd(fresh_containerd: Containerd, throttle: ThrottleProxy) -> Containerd:
    """A private daemon that also pulls through this test's throttle."""
    fresh_containerd.add_registry_host(throttle.host_port)
    return fresh_containerd


@pytest.fixture(scope="session")
def pusher(registry: Registry) -> Iterator[ImagePusher]:
    """Pushes straight to the registry; pull through the proxy with ``image.ref_at(...)``."""
    with ImagePusher(registry.url) as p:
        yield p


@pytest.fixture
def sink() -> Iterator[ReportSink]:
    """Where an agent under test sends its reports."""
    yield from serve_sink()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the daemons' log tails: on CI the temp dirs are gone afterwards."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in ("containerd", "fresh_containerd", "registry"):
            daemon = funcargs.get(name)
            if isinstance(daemon, Containerd | Registry):
                # the registry logs every 404 from a blob-exists check; those are expected
                lines = tail(daemon.log_path, 200).splitlines()
                useful = [line for line in lines if 'err.code="blob unknown"' not in line]
                report.sections.append((f"{name} log", "\n".join(useful[-60:])))
    return report
