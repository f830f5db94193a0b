"""What can be checked of the Helm chart without a helm binary: every value a template reads
exists in values.yaml (a typo there renders silently as empty), actions are balanced, and the
names the CLI relies on are what the chart creates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "chart"
TEMPLATES = sorted((CHART / "templates").glob("*"))
VALUE_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def values() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_value_a_template_reads_is_defined(template: Path) -> None:
    defaults = values()
    for match in VALUE_REF.finditer(template.read_text()):
        node: Any = defaults
        for key in match.group(1).strip(".").split("."):
            assert isinstance(node, dict) and key in node, f"{template.name}: {match.group(0)}"
            node = node[key]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_actions_are_balanced(template: Path) -> None:
    text = template.read_text()
    assert text.count("{{") == text.count("}}")
    opened = len(re.findall(r"{{-?\s*(?:if|range|with|define)\b", text))
    closed = len(re.findall(r"{{-?\s*end\b", text))
    assert opened == closed, template.name


def test_names_match_what_the_cli_looks_for() -> None:
    from pulltrace.client.kubeconfig import DEFAULT_NAMESPACE, DEFAULT_PORT, DEFAULT_SERVICE

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    collector = (CHART / "templates" / "collector.yaml").read_text()
    # release "pulltrace" (as the README installs it) names the service <release>-collector
    assert chart["name"] == "pulltrace" and '"%s-collector"' in helpers
    assert DEFAULT_SERVICE == "pulltrace-collector" and DEFAULT_NAMESPACE == "pulltrace"
    assert f"name: {DEFAULT_PORT}, port:" in collector
    assert "path: /readyz" in collector and "path: /healthz" in collector
