from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import msgspec
import pytest

from pulltrace import schema
from pulltrace.model import (
    SCHEMA_TYPES,
    AgentReport,
    LayerStatus,
    PodRef,
    PullEvent,
    PullList,
    PullStatus,
    decode,
    encode,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def sample_pull() -> PullStatus:
    return PullStatus(
        id="abc",
        node_name="node-1",
        image_ref="docker.io/library/nginx:1.27",
        repository="docker.io/library/nginx",
        manifest_digest="sha256:" + "1" * 64,
        total_bytes=100,
        downloaded_bytes=40,
        cached_bytes=10,
        percent=50.0,
        started_at=NOW,
        pods=[PodRef(namespace="default", pod_name="web-0", container="nginx")],
        layers=[LayerStatus(digest="sha256:" + "2" * 64, total_bytes=100, total_known=True)],
        total_known=True,
    )


def test_wire_names_are_the_v1_camel_case_names() -> None:
    doc = json.loads(encode(sample_pull()))
    assert {
        "id", "nodeName", "imageRef", "repository", "manifestDigest", "phase", "totalBytes",
        "downloadedBytes", "cachedBytes", "bytesPerSec", "etaSeconds", "percent", "layerCount",
        "layersDone", "layersCached", "startedAt", "completedAt", "error", "pods", "layers",
        "totalKnown",
    } == set(doc)  # fmt: skip
    assert set(doc["pods"][0]) == {"namespace", "podName", "container"}
    assert {
        "digest", "mediaType", "totalBytes", "downloadedBytes", "bytesPerSec", "percent",
        "startedAt", "completedAt", "cached", "totalKnown", "queued",
    } == set(doc["layers"][0])  # fmt: skip
    assert doc["startedAt"] == "2026-11-22T12:00:00Z"


def test_round_trip_of_every_struct() -> None:
    report = AgentReport(node_name="n", timestamp=NOW, pulls=[sample_pull()], agent_version="x")
    event = PullEvent(timestamp=NOW, type="pull.started", node_name="n", pull=sample_pull())
    for obj in (report, event, PullList(pulls=[sample_pull()])):
        assert decode(encode(obj), type(obj)) == obj
    assert json.loads(encode(event))["schemaVersion"] == "v1"


def test_report_without_pulls_decodes_to_an_empty_list() -> None:
    report = decode(b'{"nodeName": "n", "timestamp": "2026-01-01T00:00:00Z"}', AgentReport)
    assert report.pulls == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"nodeName": "", "timestamp": "2026-01-01T00:00:00Z"}',
        b'{"nodeName": "' + b"x" * 254 + b'", "timestamp": "2026-01-01T00:00:00Z"}',
        b'{"nodeName": "n", "timestamp": "yesterday"}',
        b'{"nodeName": "n", "timestamp": "2026-01-01T00:00:00Z", "pulls": {}}',
        b'{"nodeName": "n", "timestamp": "2026-01-01T00:00:00Z", "intervalSeconds": 0}',
    ],
)
def test_invalid_reports_are_rejected(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(body, AgentReport)


def test_committed_json_schemas_match_the_model() -> None:
    """Compared as JSON, not as text, so a formatting change in a dependency is no failure."""
    for name, kind in SCHEMA_TYPES.items():
        path = schema.SCHEMA_DIR / f"{name}.v1.json"
        committed = json.loads(path.read_text())
        assert committed == schema.schema_for(kind), f"run python -m pulltrace.schema ({path})"
    files = {p.name for p in schema.SCHEMA_DIR.glob("*.json")}
    assert files == {f"{name}.v1.json" for name in SCHEMA_TYPES}, "a schema without a type"


def test_schema_descriptions_are_dedented_whatever_msgspec_does() -> None:
    raw = {"description": "First line\n    second line.", "x": [{"description": "  a\n  b"}]}
    assert schema._clean_descriptions(raw) == {
        "description": "First line\nsecond line.",
        "x": [{"description": "a\nb"}],
    }


def test_encoded_structs_validate_against_their_schema() -> None:
    doc = json.loads(encode(PullList(pulls=[sample_pull()])))
    jsonschema.validate(doc, schema.schema_for(PullList))
    doc["pulls"][0]["phase"] = "downloading"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema.schema_for(PullList))
