"""The stream's bounded SSE parser reads what httpx-sse reads (the reference here), however the
bytes are split into chunks, and refuses an event or a line past its limit before holding it."""

from __future__ import annotations

import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import given
from hypothesis import strategies as st

from pulltrace.client.collector import EventParser, _EventTooLarge

FIELD = st.sampled_from(["data", "event", "id", "retry", "", "x"])
VALUE = st.text(st.characters(blacklist_characters="\r\n\x00"), max_size=20)
LINE = st.one_of(
    st.builds(lambda f, v: f"{f}: {v}", FIELD, VALUE),
    st.builds(lambda f, v: f"{f}:{v}", FIELD, VALUE),
    st.just(""),
    st.just(": heartbeat"),
    st.just("data"),
)


def reference(text: str) -> list[tuple[str, str, str]]:
    lines, decoder, events = SSELineDecoder(), SSEDecoder(), []
    for line in lines.decode(text):
        sse = decoder.decode(line)
        if sse is not None and (sse.data or sse.event):
            events.append((sse.event or "message", sse.data, sse.id))
    return events


@given(
    st.lists(LINE, max_size=30),
    st.sampled_from(["\n", "\r\n"]),
    st.lists(st.integers(1, 40), max_size=10),
)
def test_same_events_as_httpx_sse_however_chunked(
    lines: list[str], newline: str, cuts: list[int]
) -> None:
    text = "".join(line + newline for line in lines)
    data = text.encode()
    parser, events, at = EventParser(1 << 20), [], 0
    for cut in [*cuts, len(data)]:
        events += parser.feed(data[at : at + cut])
        at += cut
    events += parser.feed(data[at:])
    got = [(e.event, e.data.decode(), e.id) for e in events]
    want = [e for e in reference(text) if e[1] or e[0] != "message"]
    assert [g for g in got if g[1] or g[0] != "message"] == want


def test_heartbeats_count_as_blocks() -> None:
    parser = EventParser(100)
    assert parser.feed(b": heartbeat\n\n: heartbeat\n\n") == []
    assert parser.blocks == 2


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: " + b"x" * 60, b"x" * 60],  # one endless line
        [b"data: " + b"x" * 50 + b"\n", b"data: " + b"x" * 50 + b"\n"],  # an endless event
        [b"x" * 200],  # a line that is not even a field
    ],
)
def test_too_large_is_refused_at_the_limit(chunks: list[bytes]) -> None:
    parser = EventParser(100)
    with pytest.raises(_EventTooLarge):
        for chunk in chunks:
            parser.feed(chunk)
    assert len(parser._buffer) <= 200
