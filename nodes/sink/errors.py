"""Errors the sink's logic raises, and the gRPC status code each one maps to.

The logic (:mod:`nodes.sink.db`) knows nothing about gRPC; the servicer turns
each error into its status code with the error's message as details::

    SinkError
     +-- InvalidInput           INVALID_ARGUMENT    empty order_id / account / transaction id
     +-- TooManyOrders          RESOURCE_EXHAUSTED  more than MAX_ORDERS_PER_CALL orders
     +-- TransactionNotFound    NOT_FOUND           Commit of an id never pre-committed
     +-- TransactionAborted     FAILED_PRECONDITION Commit of an aborted (or timed-out) transaction
     +-- TransactionCommitted   FAILED_PRECONDITION Abort of a committed transaction
     +-- AlreadyCommitted       ALREADY_EXISTS      PreCommit of an id already committed

Every one of them is *definite* (Maelstrom's term): the call changed nothing.
"""

from __future__ import annotations

import grpc


class SinkError(Exception):
    """Base class; ``code`` is the gRPC status the servicer answers with."""

    code = grpc.StatusCode.INTERNAL


class InvalidInput(SinkError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class TooManyOrders(SinkError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class TransactionNotFound(SinkError):
    code = grpc.StatusCode.NOT_FOUND


class TransactionAborted(SinkError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class TransactionCommitted(SinkError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyCommitted(SinkError):
    code = grpc.StatusCode.ALREADY_EXISTS
