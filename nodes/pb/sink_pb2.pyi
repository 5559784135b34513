from nodes.pb import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WriteRequest(_message.Message):
    __slots__ = ("orders", "member_id", "epoch")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_events_pb2.Order]
    member_id: str
    epoch: int
    def __init__(self, orders: _Optional[_Iterable[_Union[_events_pb2.Order, _Mapping]]] = ..., member_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("applied", "skipped")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    applied: int
    skipped: int
    def __init__(self, applied: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class PreCommitRequest(_message.Message):
    __slots__ = ("transaction_id", "orders", "epoch", "member_id", "checkpoints")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    orders: _containers.RepeatedCompositeFieldContainer[_events_pb2.Order]
    epoch: int
    member_id: str
    checkpoints: _containers.RepeatedCompositeFieldContainer[PartitionCheckpoint]
    def __init__(self, transaction_id: _Optional[str] = ..., orders: _Optional[_Iterable[_Union[_events_pb2.Order, _Mapping]]] = ..., epoch: _Optional[int] = ..., member_id: _Optional[str] = ..., checkpoints: _Optional[_Iterable[_Union[PartitionCheckpoint, _Mapping]]] = ...) -> None: ...

class PreCommitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TransactionRequest(_message.Message):
    __slots__ = ("transaction_id", "epoch")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    epoch: int
    def __init__(self, transaction_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

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

class PartitionCheckpoint(_message.Message):
    __slots__ = ("partition", "offset", "state", "checkpoint_id", "epoch", "member_id")
    class StateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    state: _containers.ScalarMap[str, int]
    checkpoint_id: int
    epoch: int
    member_id: str
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ..., state: _Optional[_Mapping[str, int]] = ..., checkpoint_id: _Optional[int] = ..., epoch: _Optional[int] = ..., member_id: _Optional[str] = ...) -> None: ...

class FenceRequest(_message.Message):
    __slots__ = ("partitions", "epoch", "member_id")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedScalarFieldContainer[int]
    epoch: int
    member_id: str
    def __init__(self, partitions: _Optional[_Iterable[int]] = ..., epoch: _Optional[int] = ..., member_id: _Optional[str] = ...) -> None: ...

class FenceResponse(_message.Message):
    __slots__ = ("checkpoints", "aborted")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[PartitionCheckpoint]
    aborted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[PartitionCheckpoint, _Mapping]]] = ..., aborted: _Optional[_Iterable[str]] = ...) -> None: ...

class SaveCheckpointsRequest(_message.Message):
    __slots__ = ("epoch", "member_id", "checkpoints")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    member_id: str
    checkpoints: _containers.RepeatedCompositeFieldContainer[PartitionCheckpoint]
    def __init__(self, epoch: _Optional[int] = ..., member_id: _Optional[str] = ..., checkpoints: _Optional[_Iterable[_Union[PartitionCheckpoint, _Mapping]]] = ...) -> None: ...

class SaveCheckpointsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
