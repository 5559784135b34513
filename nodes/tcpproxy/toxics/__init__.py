"""Every TCP toxic, registered in one place (Toxiproxy's toxic registry).

To add a kind: one module with a :class:`nodes.tcpproxy.toxic.Toxic` subclass,
one line here, one test in tests/test_tcpproxy_toxics.py.
"""

from __future__ import annotations

from nodes.tcpproxy.toxic import Toxic
from nodes.tcpproxy.toxics.bandwidth import Bandwidth
from nodes.tcpproxy.toxics.blackhole import Blackhole
from nodes.tcpproxy.toxics.latency import Latency
from nodes.tcpproxy.toxics.limit_data import LimitData
from nodes.tcpproxy.toxics.partition import Partition
from nodes.tcpproxy.toxics.reset import Reset
from nodes.tcpproxy.toxics.slicer import Slicer
from nodes.tcpproxy.toxics.slow_close import SlowClose

TOXICS: dict[str, type[Toxic]] = {
    "latency": Latency,
    "bandwidth": Bandwidth,
    "blackhole": Blackhole,
    "partition": Partition,
    "reset": Reset,
    "slow-close": SlowClose,
    "slicer": Slicer,
    "limit-data": LimitData,
}
