"""The nemesis: process faults, link faults and (with --storage lazy) storage faults,
driven by the fault schedule.

One module per fault family, each a small class with ``invoke(step)`` and
``heal()`` (Jepsen's nemesis protocol), composed in :data:`NEMESES` by the
schedule step's ``f``. Every operation is recorded in the nemesis history
(``nemesis.jsonl``) as invoke then ok / info.
"""

from harness.nemesis.base import Nemesis, NemesisContext  # noqa: F401
from harness.nemesis.datadir import DataDirNemesis
from harness.nemesis.failpoint import FailpointNemesis
from harness.nemesis.group import AddProcessorNemesis, ZombieNemesis
from harness.nemesis.link import LinkNemesis
from harness.nemesis.partition import PartitionNemesis
from harness.nemesis.process import KillNemesis, PauseNemesis
from harness.nemesis.stop import StopNemesis
from harness.nemesis.storage import DiskFullNemesis, FsyncErrorNemesis, PowerLossNemesis

NEMESES: dict[str, type[Nemesis]] = {
    "kill": KillNemesis,
    "pause": PauseNemesis,
    "stop": StopNemesis,
    "link": LinkNemesis,
    "partition": PartitionNemesis,   # NATS: cut the routes of some servers (partition.py)
    "failpoint": FailpointNemesis,
    "power-loss": PowerLossNemesis,
    "fsync-error": FsyncErrorNemesis,
    "disk-full": DiskFullNemesis,
    # storage faults on a stopped node's data dir (plain file operations): datadir.py
    # (a "corrupt" aimed at a NATS server goes on to corrupt.py)
    "corrupt": DataDirNemesis,
    "snapshot": DataDirNemesis,
    "rollback": DataDirNemesis,
    "wipe": DataDirNemesis,
    # consumer groups (--processors N): group.py
    "zombie": ZombieNemesis,
    "add-processor": AddProcessorNemesis,
}
"""Schedule step ``f`` -> the nemesis that carries it out."""
