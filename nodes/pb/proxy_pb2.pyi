from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaultSpec(_message.Message):
    __slots__ = ("kind", "method", "probability", "count", "after_calls", "delay_ms", "jitter_ms", "side", "code", "link", "hold_ms", "match", "direction", "rate_kbps", "bytes")
    class MatchEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AFTER_CALLS_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    JITTER_MS_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    HOLD_MS_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    RATE_KBPS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    method: str
    probability: float
    count: int
    after_calls: int
    delay_ms: int
    jitter_ms: int
    side: str
    code: str
    link: str
    hold_ms: int
    match: _containers.ScalarMap[str, str]
    direction: str
    rate_kbps: int
    bytes: int
    def __init__(self, kind: _Optional[str] = ..., method: _Optional[str] = ..., probability: _Optional[float] = ..., count: _Optional[int] = ..., after_calls: _Optional[int] = ..., delay_ms: _Optional[int] = ..., jitter_ms: _Optional[int] = ..., side: _Optional[str] = ..., code: _Optional[str] = ..., link: _Optional[str] = ..., hold_ms: _Optional[int] = ..., match: _Optional[_Mapping[str, str]] = ..., direction: _Optional[str] = ..., rate_kbps: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class Fault(_message.Message):
    __slots__ = ("fault_id", "spec", "matched", "fired", "exhausted")
    FAULT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    fault_id: str
    spec: FaultSpec
    matched: int
    fired: int
    exhausted: bool
    def __init__(self, fault_id: _Optional[str] = ..., spec: _Optional[_Union[FaultSpec, _Mapping]] = ..., matched: _Optional[int] = ..., fired: _Optional[int] = ..., exhausted: _Optional[bool] = ...) -> None: ...

class AddFaultResponse(_message.Message):
    __slots__ = ("fault_id",)
    FAULT_ID_FIELD_NUMBER: _ClassVar[int]
    fault_id: str
    def __init__(self, fault_id: _Optional[str] = ...) -> None: ...

class RemoveFaultRequest(_message.Message):
    __slots__ = ("fault_id",)
    FAULT_ID_FIELD_NUMBER: _ClassVar[int]
    fault_id: str
    def __init__(self, fault_id: _Optional[str] = ...) -> None: ...

class RemoveFaultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFaultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFaultsResponse(_message.Message):
    __slots__ = ("link", "faults")
    LINK_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    link: str
    faults: _containers.RepeatedCompositeFieldContainer[Fault]
    def __init__(self, link: _Optional[str] = ..., faults: _Optional[_Iterable[_Union[Fault, _Mapping]]] = ...) -> None: ...

class HealRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class MethodStats(_message.Message):
    __slots__ = ("method", "calls", "forwarded", "dropped", "duplicated", "delayed", "errored", "upstream_errors", "held", "bytes_in", "bytes_out")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATED_FIELD_NUMBER: _ClassVar[int]
    DELAYED_FIELD_NUMBER: _ClassVar[int]
    ERRORED_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ERRORS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    method: str
    calls: int
    forwarded: int
    dropped: int
    duplicated: int
    delayed: int
    errored: int
    upstream_errors: int
    held: int
    bytes_in: int
    bytes_out: int
    def __init__(self, method: _Optional[str] = ..., calls: _Optional[int] = ..., forwarded: _Optional[int] = ..., dropped: _Optional[int] = ..., duplicated: _Optional[int] = ..., delayed: _Optional[int] = ..., errored: _Optional[int] = ..., upstream_errors: _Optional[int] = ..., held: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ...) -> None: ...

class SetDownRequest(_message.Message):
    __slots__ = ("down",)
    DOWN_FIELD_NUMBER: _ClassVar[int]
    down: bool
    def __init__(self, down: _Optional[bool] = ...) -> None: ...

class SetDownResponse(_message.Message):
    __slots__ = ("was_down", "closed")
    WAS_DOWN_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    was_down: bool
    closed: int
    def __init__(self, was_down: _Optional[bool] = ..., closed: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("link", "calls", "methods")
    LINK_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    link: str
    calls: int
    methods: _containers.RepeatedCompositeFieldContainer[MethodStats]
    def __init__(self, link: _Optional[str] = ..., calls: _Optional[int] = ..., methods: _Optional[_Iterable[_Union[MethodStats, _Mapping]]] = ...) -> None: ...
