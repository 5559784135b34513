"""``testbed bench``: throughput, latency, CPU, memory and recovery per mode,
against raw gRPC in the same run (issue 6).

One module per part, each a plain async function returning a JSON-able dict:

- :mod:`baseline` - the same record batches over one gRPC hop to a do-nothing
  server (:mod:`null_server`): the transport limit of this language and machine;
- :mod:`pipeline` - one cluster per (mode, links, batch size): events/s end to
  end, latency p50/p99, CPU seconds per 1,000 events and peak RSS per node;
- :mod:`recovery` - restart-to-SERVING of the broker (a big log), the processor
  (from a checkpoint) and the sink;
- :mod:`audit` - time and peak memory of the checker on a large run;
- :mod:`campaign_rate` - kill/restart cycles per minute with a full audit.

:mod:`runner` runs them in order and writes ``bench.json``; :mod:`report` prints
the table with the ratios. Figures are measurements on the machine at hand,
never asserted: a noisy neighbour changes them, the ratios within one run hold
better.
"""
