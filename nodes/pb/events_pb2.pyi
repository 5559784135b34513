from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Order(_message.Message):
    __slots__ = ("order_id", "account", "amount_cents")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account: str
    amount_cents: int
    def __init__(self, order_id: _Optional[str] = ..., account: _Optional[str] = ..., amount_cents: _Optional[int] = ...) -> None: ...
