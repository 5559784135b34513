from nodes.pb import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WriteRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_events_pb2.Order]
    def __init__(self, orders: _Optional[_Iterable[_Union[_events_pb2.Order, _Mapping]]] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("applied", "skipped")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    applied: int
    skipped: int
    def __init__(self, applied: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class PreCommitRequest(_message.Message):
    __slots__ = ("transaction_id", "orders")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    orders: _containers.RepeatedCompositeFieldContainer[_events_pb2.Order]
    def __init__(self, transaction_id: _Optional[str] = ..., orders: _Optional[_Iterable[_Union[_events_pb2.Order, _Mapping]]] = ...) -> None: ...

class PreCommitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransactionRequest(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("already_committed", "applied")
    ALREADY_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    already_committed: bool
    applied: int
    def __init__(self, already_committed: _Optional[bool] = ..., applied: _Optional[int] = ...) -> None: ...

class AbortResponse(_message.Message):
    __slots__ = ("already_aborted",)
    ALREADY_ABORTED_FIELD_NUMBER: _ClassVar[int]
    already_aborted: bool
    def __init__(self, already_aborted: _Optional[bool] = ...) -> None: ...

class ListPreparedRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPreparedResponse(_message.Message):
    __slots__ = ("transaction_ids",)
    TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    transaction_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, transaction_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("after_order_id", "limit")
    AFTER_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_order_id: str
    limit: int
    def __init__(self, after_order_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class OrderCount(_message.Message):
    __slots__ = ("order_id", "account", "amount_cents", "applied_count")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_COUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account: str
    amount_cents: int
    applied_count: int
    def __init__(self, order_id: _Optional[str] = ..., account: _Optional[str] = ..., amount_cents: _Optional[int] = ..., applied_count: _Optional[int] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("account", "balance_cents")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_CENTS_FIELD_NUMBER: _ClassVar[int]
    account: str
    balance_cents: int
    def __init__(self, account: _Optional[str] = ..., balance_cents: _Optional[int] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("orders", "balances", "done")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[OrderCount]
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    done: bool
    def __init__(self, orders: _Optional[_Iterable[_Union[OrderCount, _Mapping]]] = ..., balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class DeadLetterEntry(_message.Message):
    __slots__ = ("order_id", "partition", "offset", "reason", "value_bytes", "account", "amount_cents")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VALUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    partition: int
    offset: int
    reason: str
    value_bytes: int
    account: str
    amount_cents: int
    def __init__(self, order_id: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., reason: _Optional[str] = ..., value_bytes: _Optional[int] = ..., account: _Optional[str] = ..., amount_cents: _Optional[int] = ...) -> None: ...

class DeadLetterRequest(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DeadLetterEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[DeadLetterEntry, _Mapping]]] = ...) -> None: ...

class DeadLetterResponse(_message.Message):
    __slots__ = ("added", "existing")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    added: int
    existing: int
    def __init__(self, added: _Optional[int] = ..., existing: _Optional[int] = ...) -> None: ...
