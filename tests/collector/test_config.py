"""Flags, environment fallbacks, and one clear line for every bad value."""

from __future__ import annotations

import pytest

from pulltrace.collector.config import CollectorConfig
from pulltrace.listen import ConfigError, parse_address


def test_defaults() -> None:
    config = CollectorConfig.from_flags(env={})
    assert config.listen == ("", 8080) and config.metrics_listen == ("", 9090)
    assert config.history_ttl == 1800.0 and config.log_level == "info"
    assert config.watch_namespaces == () and config.agent_token == config.read_token == ""
    assert config.max_sse_clients == 256 and config.max_report_bytes == 1 << 20


def test_environment_fallbacks_and_flags_that_override_them() -> None:
    env = {
        "PULLTRACE_AGENT_TOKEN": "a",
        "PULLTRACE_READ_TOKEN": "r",
        "PULLTRACE_WATCH_NAMESPACES": "shop, kube-system,,",
        "PULLTRACE_HISTORY_TTL": "5m",
        "PULLTRACE_LOG_LEVEL": "DEBUG",
    }
    config = CollectorConfig.from_flags(env=env)
    assert (config.agent_token, config.read_token) == ("a", "r")
    assert config.watch_namespaces == ("shop", "kube-system")
    assert config.history_ttl == 300.0 and config.log_level == "debug"
    flagged = CollectorConfig.from_flags(
        env=env, history_ttl="90s", log_level="warning", watch_namespaces=""
    )
    assert flagged.history_ttl == 90.0 and flagged.log_level == "warning"
    assert flagged.watch_namespaces == ()


@pytest.mark.parametrize(
    ("text", "address"),
    [
        (":8080", ("", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9090", ("::1", 9090)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_listen_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["8080", "", ":", ":99999", "[::1]", "a:b", "::1:80"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--listen: invalid address .* \(e\.g\. :8080"):
        CollectorConfig.from_flags(listen=text, env={})


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (
            {},
            {"PULLTRACE_HISTORY_TTL": "soon"},
            "PULLTRACE_HISTORY_TTL: invalid duration 'soon' (e.g. 1s, 500ms, 2m)",
        ),
        (
            {"history_ttl": "-1m"},
            {},
            "--history-ttl: invalid duration '-1m' (e.g. 1s, 500ms, 2m)",
        ),
        (
            {},
            {"PULLTRACE_LOG_LEVEL": "loud"},
            "PULLTRACE_LOG_LEVEL: invalid log level 'loud' (one of debug, info, warning, error)",
        ),
        (
            {"watch_namespaces": "shop,Bad_NS"},
            {},
            "--watch-namespaces: 'Bad_NS' is not a valid namespace name",
        ),
        (
            {"metrics_listen": "nine"},
            {},
            "--metrics-listen: invalid address 'nine' (e.g. :8080 or 127.0.0.1:8080)",
        ),
    ],
)
def test_bad_values_are_one_sentence_naming_their_source(
    flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        CollectorConfig.from_flags(env=env, **flags)
    assert str(caught.value) == message


def test_the_caps_come_from_flags_or_the_environment_and_are_bounded() -> None:
    assert CollectorConfig.from_flags(env={}).max_pulls == 20000
    assert CollectorConfig.from_flags(env={}).max_nodes == 5000
    env = {"PULLTRACE_MAX_PULLS": "100", "PULLTRACE_MAX_NODES": "7"}
    config = CollectorConfig.from_flags(env=env)
    assert (config.max_pulls, config.max_nodes) == (100, 7)
    assert CollectorConfig.from_flags(env=env, max_pulls="50").max_pulls == 50
    for bad in ("0", "-1", "1e3", "lots", "10000001"):
        with pytest.raises(ConfigError, match=r"PULLTRACE_MAX_NODES: .* whole number"):
            CollectorConfig.from_flags(env={"PULLTRACE_MAX_NODES": bad})
    with pytest.raises(ConfigError, match="--max-pulls"):
        CollectorConfig.from_flags(env={}, max_pulls="x")
