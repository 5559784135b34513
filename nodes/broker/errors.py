"""Errors of the broker's logic classes, each carrying the gRPC status code the servicer returns.

    BrokerError                  (base; .code is a grpc.StatusCode name)
    +-- InvalidRequest           INVALID_ARGUMENT: unknown topic/partition, empty batch, bad offset,
    |                            a partition listed twice, a name longer than its limit
    +-- RequestTooLarge          RESOURCE_EXHAUSTED: record > 1 MiB, batch > 16 MiB or > 100,000
                                 records, > 1,024 partitions in one Fetch / CommitOffset
    +-- SequenceGap              OUT_OF_RANGE: base sequence ahead of the next expected one
    +-- OffsetOutOfRange         OUT_OF_RANGE: offset commit beyond the partition's log end
    +-- StaleEpoch               FAILED_PRECONDITION: producer epoch fenced by a newer one
    +-- UnknownProducer          FAILED_PRECONDITION: producer id never allocated
    +-- SequenceOverlap          FAILED_PRECONDITION: batch partly already appended
    +-- StorageError             UNAVAILABLE: a write or fsync failed; nothing acknowledged
    +-- CorruptLog               DATA_LOSS: a stored record failed its CRC on read (never served)
"""

from __future__ import annotations


class BrokerError(Exception):
    code = "INTERNAL"


class InvalidRequest(BrokerError):
    code = "INVALID_ARGUMENT"


class RequestTooLarge(BrokerError):
    code = "RESOURCE_EXHAUSTED"


class SequenceGap(BrokerError):
    code = "OUT_OF_RANGE"


class OffsetOutOfRange(BrokerError):
    code = "OUT_OF_RANGE"


class StaleEpoch(BrokerError):
    code = "FAILED_PRECONDITION"


class UnknownProducer(BrokerError):
    code = "FAILED_PRECONDITION"


class SequenceOverlap(BrokerError):
    code = "FAILED_PRECONDITION"


class StorageError(BrokerError):
    code = "UNAVAILABLE"


class CorruptLog(BrokerError):
    code = "DATA_LOSS"
