"""The broker node: a Kafka-like replayable source (shared/DESIGN.md).

Read in this order: record.py (frame format) -> segment.py (one file, its
index, recovery scan) -> partition_log.py (segments of a partition) -> log.py
(topic on disk, offline reader for the checker) -> producer_state.py
(idempotent producer, KIP-98) -> offsets.py (committed consumer offsets) ->
broker.py (group commit, long-poll fetch) -> service.py (gRPC shell) ->
__main__.py (CLI).

Data dir layout::

    broker-meta.json              {"topic": "orders", "partitions": N}
    orders-<p>/<base:020d>.log    segment files (record frames)
    orders-<p>/<base:020d>.index  recovery point: verified byte count + position index
    producers.json                next producer id and epochs (written before InitProducer answers)
    producer-snapshot.json        producer sequences at known log ends (recovery point)
    consumer-offsets.json         committed offsets per group and topic
    broker.log                    JSON log
"""
