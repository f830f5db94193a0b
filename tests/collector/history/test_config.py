"""The history's configuration: flags and their environment variables, checked and bounded, and
a database that cannot be used stopping the collector with one line (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pulltrace.collector.config import DEFAULT_MAX_PULLS, CollectorConfig
from pulltrace.listen import ConfigError
from tests.collector.test_process import hermetic_env


def test_defaults_keep_the_history_off() -> None:
    config = CollectorConfig.from_flags(env={})
    assert (config.data_dir, config.database, config.webhook_secret) == ("", "", "")
    assert config.history_retention == 30 * 86400.0
    assert config.history_max_pulls == DEFAULT_MAX_PULLS


def test_environment_and_flags() -> None:
    env = {
        "PULLTRACE_DATA_DIR": "/var/lib/pulltrace",
        "PULLTRACE_DATABASE": "postgresql://u:p@db/pulltrace",
        "PULLTRACE_HISTORY_RETENTION": "7d",
        "PULLTRACE_HISTORY_MAX_PULLS": "5000",
        "PULLTRACE_WEBHOOK_SECRET": "s3cret",
    }
    config = CollectorConfig.from_flags(env=env)
    assert config.data_dir == "/var/lib/pulltrace" and config.database.endswith("/pulltrace")
    assert (config.history_retention, config.history_max_pulls) == (7 * 86400.0, 5000)
    assert config.webhook_secret == "s3cret"
    flagged = CollectorConfig.from_flags(env=env, data_dir="/data", history_retention="12h")
    assert flagged.data_dir == "/data" and flagged.history_retention == 12 * 3600.0


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PULLTRACE_DATABASE": "mysql://u:hunter2@db/x"}, "PULLTRACE_DATABASE: must be a"),
        ({"PULLTRACE_DATABASE": "postgresql://" + "x" * 5000}, "PULLTRACE_DATABASE"),
        ({"PULLTRACE_HISTORY_RETENTION": "30"}, "out of range"),
        ({"PULLTRACE_HISTORY_RETENTION": "99999999d"}, "PULLTRACE_HISTORY_RETENTION"),
        ({"PULLTRACE_HISTORY_RETENTION": "soon"}, "PULLTRACE_HISTORY_RETENTION"),
        ({"PULLTRACE_HISTORY_MAX_PULLS": "0"}, "not a number of pulls"),
        ({"PULLTRACE_HISTORY_MAX_PULLS": "1e9"}, "not a number of pulls"),
        ({"PULLTRACE_DATA_DIR": "x" * 5000}, "PULLTRACE_DATA_DIR"),
    ],
)
def test_bad_values_name_their_source(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        CollectorConfig.from_flags(env=env)
    assert "hunter2" not in str(caught.value)  # a database URL is never echoed


def test_an_unusable_data_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", "collector", "--listen", "127.0.0.1:0",
         "--metrics-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
        env=hermetic_env(tmp_path, PULLTRACE_DATA_DIR=str(blocker / "data")),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"pulltrace: history database {blocker / 'data' / 'history.db'}: ")
    assert "Traceback" not in out.stderr


def test_an_unreachable_postgres_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pulltrace.cli", "collector", "--listen", "127.0.0.1:0",
         "--metrics-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
        env=hermetic_env(tmp_path, PULLTRACE_DATABASE="postgresql://u:hunter2@127.0.0.1:1/x"),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("pulltrace: history database (PostgreSQL): ")
    assert "hunter2" not in out.stderr and "Traceback" not in out.stderr
