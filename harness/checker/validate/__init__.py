"""The audit's input validation layer: every file a run left behind is read through here.

One small validator per file kind; each returns the parsed content or raises
:class:`InputError` with ONE line naming the file and what is wrong with it
(missing, a directory, unreadable, empty, not UTF-8, not JSON, truncated, or
of the wrong shape). The CLI prints that line and exits 2, so the audit never
reports a verdict ("held") from an input it could not read (issue 11).

Validators (file -> what is checked):

- :func:`cluster_config`  ``cluster.json``: an object with a ``config`` object
  (``mode`` one of the modes, ``seed`` int, ``events`` int >= 0);
- :func:`history_ops`  ``producer/history.jsonl``: JSON objects, one a line,
  ``type`` invoke/ok/fail/info, ``value.orders`` a list of strings, ``index``
  strictly increasing; only the LAST line may be torn (a kill -9 mid-write),
  and only when it has no newline;
- :func:`operator_state`  ``processor/final-status.json`` / ``checkpoint.json``:
  ``state`` an object of account -> integer cents;
- :func:`broker_meta`  ``broker/broker-meta.json``: ``partitions`` an int >= 1;
- :func:`sink_snapshot` (:func:`sink_columns`, streamed)  ``sink/sink.db``: an SQLite database with ``orders``
  and ``balances``, integer counts and balances (a float balance is an
  overflowed write);
- :func:`result_file`  ``result.json``: ``modes`` a list of {mode, dir};
- :func:`schedule_file`  ``schedule.json`` (harness.schedule.load's checks);
- :func:`nemesis_ops`  ``<mode>/nemesis.jsonl``: JSON objects with ``type``
  and ``f``.

JSON is parsed strictly: ``NaN`` and ``Infinity`` are refused (not JSON).
"""

from harness.checker.validate.base import (MAX_JSON_BYTES, OP_TYPES, InputError, json_object,  # noqa: F401
                                           jsonl_objects, loads, read_bytes, read_json)
from harness.checker.validate.mode_files import (broker_meta, broker_partitions, cluster_config,  # noqa: F401
                                                 consumer_offsets, history_ops, nemesis_ops,
                                                 offsets_within_log, operator_state, sink_columns,
                                                 sink_snapshot)
from harness.checker.validate.run_files import (MODE_ROW_FIELDS, RESULT_FIELDS, check_report,  # noqa: F401
                                                proxy_events, report_inputs, result_file, schedule_file)
