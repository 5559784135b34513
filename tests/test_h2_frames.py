"""nodes/proxy/h2.py: whole frames cut from a byte stream however it is chunked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as hst

from nodes.proxy import h2


def frame(t: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((t, flags)) + stream.to_bytes(4, "big") + payload


FRAMES = [frame(4, 0, 0, b"\0" * 12), frame(1, 4, 1, b"hdrs"), frame(0, 1, 1, b"x" * 300),
          frame(1, 5, 3, b""), frame(3, 0, 3, b"\0\0\0\x08")]
STREAM = h2.PREFACE + b"".join(FRAMES)


@settings(max_examples=200, deadline=None)
@given(hst.lists(hst.integers(1, len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_frames_and_bytes(cuts):
    cuts = sorted(set(cuts)) + [len(STREAM)]
    s, out, got, prev = h2.FrameSplitter(preface=True), b"", [], 0
    for c in cuts:
        data, frames = s.feed(STREAM[prev:c])
        got += [(f.type, f.flags, f.stream, bytes(f.payload), data[f.start:f.end]) for f in frames]
        out += data
        prev = c
    assert out == STREAM
    assert [g[4] for g in got] == FRAMES
    assert [(g[0], g[1], g[2]) for g in got] == [(4, 0, 0), (1, 4, 1), (0, 1, 1), (1, 5, 3), (3, 0, 3)]
    assert got[2][3] == b"x" * 300


def test_not_http2_is_refused():
    with pytest.raises(ValueError):
        h2.FrameSplitter(preface=True).feed(b"GET / HTTP/1.1\r\n")


def test_goaway_frame():
    g = h2.goaway(7)
    data, frames = h2.FrameSplitter(preface=False).feed(g)
    assert data == g and frames[0].type == h2.GOAWAY and frames[0].stream == 0
    assert bytes(frames[0].payload) == b"\0\0\0\x07\0\0\0\0"


def test_header_block_fragment_strips_padding_and_priority():
    payload = bytes([2]) + b"\0\0\0\0\x10" + b"block" + b"\0\0"
    data, frames = h2.FrameSplitter(preface=False).feed(frame(1, h2.PADDED | h2.PRIORITY | h2.END_HEADERS, 1, payload))
    assert bytes(h2.header_block_fragment(frames[0])) == b"block"
