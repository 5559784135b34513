"""The nemesis: process faults and link faults, driven by the fault schedule.

One module per fault family, each a small class with ``invoke(step)`` and
``heal()`` (Jepsen's nemesis protocol), composed in :data:`NEMESES` by the
schedule step's ``f``. Every operation is recorded in the nemesis history
(``nemesis.jsonl``) as invoke then ok / info.
"""

from harness.nemesis.base import Nemesis, NemesisContext  # noqa: F401
from harness.nemesis.datadir import DataDirNemesis
from harness.nemesis.failpoint import FailpointNemesis
from harness.nemesis.link import LinkNemesis
from harness.nemesis.process import KillNemesis, PauseNemesis

NEMESES: dict[str, type[Nemesis]] = {
    "kill": KillNemesis,
    "pause": PauseNemesis,
    "link": LinkNemesis,
    "failpoint": FailpointNemesis,
    # storage faults on a stopped node's data dir (plain file operations): datadir.py
    "corrupt": DataDirNemesis,
    "snapshot": DataDirNemesis,
    "rollback": DataDirNemesis,
    "wipe": DataDirNemesis,
}
"""Schedule step ``f`` -> the nemesis that carries it out."""
