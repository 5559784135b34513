"""Every fault kind, registered in one place (Toxiproxy's toxic registry, Maelstrom's dicts).

To add a kind: one module with a :class:`nodes.proxy.fault.Fault` subclass,
one line here, one test in tests/test_proxy_faults.py.
"""

from __future__ import annotations

from nodes.proxy.fault import Fault
from nodes.proxy.faults.delay import Delay
from nodes.proxy.faults.drop_request import DropRequest
from nodes.proxy.faults.drop_response import DropResponse
from nodes.proxy.faults.duplicate import Duplicate
from nodes.proxy.faults.error import Error
from nodes.proxy.faults.late import Late
from nodes.proxy.faults.partition import Partition
from nodes.proxy.faults.reorder import Reorder

FAULTS: dict[str, type[Fault]] = {
    "drop-request": DropRequest,
    "drop-response": DropResponse,
    "delay": Delay,
    "duplicate": Duplicate,
    "error": Error,
    "partition": Partition,
    "late": Late,
    "reorder": Reorder,
}
