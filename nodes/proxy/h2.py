"""HTTP/2 framing, as much as the proxy's fast path needs (RFC 9113 section 4).

The fast path (nodes/proxy/fastpath.py) relays a gRPC connection's bytes without
terminating HTTP/2. It still has to know where frames begin and end (to put a
GOAWAY of its own between two frames), which client streams are open, and which
method each call names (``:path``, for the per-method counters). This module
splits a byte stream into whole frames and builds the GOAWAY frame; nothing else
of HTTP/2 is interpreted.

A frame is a 9-byte header (24-bit payload length, 8-bit type, 8-bit flags, a
reserved bit and a 31-bit stream id) and its payload. The client's side begins
with the 24-byte connection preface.
"""

from __future__ import annotations

from typing import NamedTuple

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_BYTES = 9
MAX_STREAM_ID = 0x7FFFFFFF
"""A GOAWAY naming it refuses no stream: "stop opening streams here" (RFC 9113 6.8)."""

DATA, HEADERS, RST_STREAM, GOAWAY, CONTINUATION = 0x0, 0x1, 0x3, 0x7, 0x9
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20


class Frame(NamedTuple):
    """One whole frame: ``start``/``end`` are byte offsets in the buffer it was cut from
    (header included); ``payload`` is a memoryview of its payload."""

    type: int
    flags: int
    stream: int
    start: int
    end: int
    payload: memoryview


class FrameSplitter:
    """Cuts a byte stream into whole frames, incrementally.

    ``feed(data)`` returns ``(prefix, frames)``: ``prefix`` is the bytes of the
    preface (client side, first call only) and the whole frames now available,
    ``frames`` those frames with offsets into ``prefix``; the bytes of a frame
    not yet complete stay buffered for the next call.

    Args:
        preface: True on the client's side (the 24-byte preface comes first).

    Raises (from ``feed``): ValueError when the client's first bytes are not the
    preface (not HTTP/2: the caller closes the connection).
    """

    def __init__(self, *, preface: bool) -> None:
        self._buf = bytearray()
        self._preface = preface

    def feed(self, data: bytes) -> tuple[bytes, list[Frame]]:
        buf = self._buf
        buf += data
        pos = 0
        if self._preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise ValueError("not an HTTP/2 connection preface")
                return b"", []
            if buf[:len(PREFACE)] != PREFACE:
                raise ValueError("not an HTTP/2 connection preface")
            pos = len(PREFACE)
            self._preface = False
        frames: list[Frame] = []
        n = len(buf)
        view = memoryview(buf)
        while pos + HEADER_BYTES <= n:
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            end = pos + HEADER_BYTES + length
            if end > n:
                break
            stream = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            frames.append(Frame(buf[pos + 3], buf[pos + 4], stream, pos, end,
                                view[pos + HEADER_BYTES:end]))
            pos = end
        if pos == 0:
            view.release()
            return b"", []
        out = bytes(buf[:pos])
        # Payload views must point into ``out``, which outlives the buffer's next use.
        view.release()
        ov = memoryview(out)
        frames = [f._replace(payload=ov[f.start + HEADER_BYTES:f.end]) for f in frames]
        del buf[:pos]
        return out, frames


def header_block_fragment(frame: Frame) -> memoryview:
    """The header block fragment of a HEADERS frame (padding and priority removed) or
    of a CONTINUATION frame. Raises ValueError on a malformed padding length."""
    p = frame.payload
    if frame.type != HEADERS:
        return p
    start, end = 0, len(p)
    if frame.flags & PADDED:
        if not p:
            raise ValueError("HEADERS frame: PADDED without a pad length")
        start, end = 1, end - p[0]
    if frame.flags & PRIORITY:
        start += 5
    if start > end:
        raise ValueError("HEADERS frame: padding longer than the payload")
    return p[start:end]


def goaway(last_stream_id: int, error_code: int = 0) -> bytes:
    """A GOAWAY frame (stream 0, no debug data): the peer may finish streams up to
    ``last_stream_id`` on this connection and opens a new one for any later stream
    (RFC 9113 section 6.8; grpc-core retries unprocessed calls transparently)."""
    payload = (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big") + error_code.to_bytes(4, "big")
    return len(payload).to_bytes(3, "big") + bytes((GOAWAY, 0)) + b"\0\0\0\0" + payload


def cap_goaways(data: bytes, frames: list[Frame], last_stream_id: int) -> bytes:
    """``data`` with the last-stream-id of each GOAWAY frame in ``frames`` (cut from
    ``data``) lowered to ``last_stream_id`` where it is higher: after the proxy's own
    GOAWAY, a later one may not name more streams (RFC 9113 section 6.8)."""
    buf = bytearray(data)
    for f in frames:
        at = f.start + HEADER_BYTES
        if f.end - at >= 4 and int.from_bytes(buf[at:at + 4], "big") & 0x7FFFFFFF > last_stream_id:
            buf[at:at + 4] = (last_stream_id & 0x7FFFFFFF).to_bytes(4, "big")
    return bytes(buf)
