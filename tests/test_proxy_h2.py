"""nodes/proxy/h2.py: HTTP/2 frames cut from a byte stream in any chunking; GOAWAY built
and capped; HEADERS padding and priority removed. Pure functions, no processes."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder, Encoder

from nodes.proxy import h2


def frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + stream.to_bytes(4, "big") + payload


def test_frames_cut_the_same_in_any_chunking():
    block = Encoder().encode([(":method", "POST"), (":path", "/testbed.v1.Sink/Apply")])
    stream = (h2.PREFACE + frame(0x4, 0, 0, b"") + frame(h2.HEADERS, h2.END_HEADERS, 1, block)
              + frame(h2.DATA, h2.END_STREAM, 1, b"x" * 300) + frame(h2.RST_STREAM, 0, 3, b"\0\0\0\x08"))
    rng = random.Random(7)
    for _ in range(50):
        sp, got, pos = h2.FrameSplitter(preface=True), [], 0
        relayed = b""
        while pos < len(stream):
            n = rng.randint(1, 40)
            out, frames = sp.feed(stream[pos:pos + n])
            relayed += out
            got += [(f.type, f.flags, f.stream, bytes(f.payload)) for f in frames]
            pos += n
        assert relayed == stream   # every byte passed on once, whole frames only
        assert [g[:3] for g in got] == [(0x4, 0, 0), (h2.HEADERS, h2.END_HEADERS, 1),
                                        (h2.DATA, h2.END_STREAM, 1), (h2.RST_STREAM, 0, 3)]
        assert dict(Decoder().decode(got[1][3]))[":path"] == "/testbed.v1.Sink/Apply"


def test_not_a_preface_is_refused():
    with pytest.raises(ValueError):
        h2.FrameSplitter(preface=True).feed(b"GET / HTTP/1.1\r\n")


def test_header_block_fragment_drops_padding_and_priority():
    body = b"BLOCK"
    payload = bytes([3]) + b"\0\0\0\x01\x10" + body + b"\0\0\0"
    _, (f,) = h2.FrameSplitter(preface=False).feed(
        frame(h2.HEADERS, h2.END_HEADERS | h2.PADDED | h2.PRIORITY, 1, payload))
    assert bytes(h2.header_block_fragment(f)) == body


def test_goaway_and_cap():
    g = h2.goaway(7)
    assert g == frame(h2.GOAWAY, 0, 0, (7).to_bytes(4, "big") + b"\0\0\0\0")
    out, frames = h2.FrameSplitter(preface=False).feed(h2.goaway(9) + h2.goaway(3))
    capped = h2.cap_goaways(out, frames, 5)
    assert capped == h2.goaway(5) + h2.goaway(3)
