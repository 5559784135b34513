from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node", "mode", "status_json")
    NODE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    node: str
    mode: str
    status_json: str
    def __init__(self, node: _Optional[str] = ..., mode: _Optional[str] = ..., status_json: _Optional[str] = ...) -> None: ...

class ArmFailpointRequest(_message.Message):
    __slots__ = ("name", "action", "delay_ms", "timeout_ms", "nth", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    NTH_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: str
    delay_ms: int
    timeout_ms: int
    nth: int
    count: int
    def __init__(self, name: _Optional[str] = ..., action: _Optional[str] = ..., delay_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., nth: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class ArmFailpointResponse(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: str
    def __init__(self, spec: _Optional[str] = ...) -> None: ...

class DisarmFailpointRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DisarmFailpointResponse(_message.Message):
    __slots__ = ("was_armed",)
    WAS_ARMED_FIELD_NUMBER: _ClassVar[int]
    was_armed: bool
    def __init__(self, was_armed: _Optional[bool] = ...) -> None: ...

class ListFailpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FailpointInfo(_message.Message):
    __slots__ = ("name", "description", "armed", "hits", "fired", "total_fired")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ARMED_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    armed: str
    hits: int
    fired: int
    total_fired: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., armed: _Optional[str] = ..., hits: _Optional[int] = ..., fired: _Optional[int] = ..., total_fired: _Optional[int] = ...) -> None: ...

class ListFailpointsResponse(_message.Message):
    __slots__ = ("failpoints",)
    FAILPOINTS_FIELD_NUMBER: _ClassVar[int]
    failpoints: _containers.RepeatedCompositeFieldContainer[FailpointInfo]
    def __init__(self, failpoints: _Optional[_Iterable[_Union[FailpointInfo, _Mapping]]] = ...) -> None: ...
