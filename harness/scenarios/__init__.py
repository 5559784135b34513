"""The scenario catalog: named, seeded fault schedules with the verdict expected per mode.

A scenario is a small JSON file in ``harness/scenarios/catalog/`` (one per
scenario, shared/scenarios.md's eight plus a few more). Shape::

    {"name": "s1-lost-ack-after-append",
     "title": "Lost ACK after append (idempotent producer)",
     "incident": "one line: the real incident it reduces",
     "source": "shared/scenarios.md #1",
     "config": {"events": 1000, "seed": 1, "batch_size": 10, "rate": 1000,
                "extra_args": {"sink": ["--prepared-timeout-ms", "300"]},
                "drain_timeout_s": 60, "storage": "direct" | "lazy",
                "disabled": [ablation names switched off for the run as written: a shrunk
                             scenario (testbed shrink) of a run with --disable],
                "fetch_group": 25 (processor --fetch-group; default 0),
                "sequential_sends": true (producer --sequential-sends; the default),
                "processors": 3 (processors in one consumer group; default 1),
                "session_timeout_ms": 2000 (their group session timeout)},
     "steps": [ ...fault schedule steps (harness/schedule.py; "f": kill|pause|stop|link|failpoint|
                power-loss|fsync-error|disk-full: the last three need "storage": "lazy"); each may
                say "must_fire": true (the run is NOT as expected if it did not fire)... ],
     "expect": {"<mode label>": EXPECTATION, ...},
     "ablations": {"<ablation name>": {"<mode label>": EXPECTATION, ...}}}

Mode labels: ``at-most-once``, ``at-least-once``, ``exactly-once/idempotent``,
``exactly-once/transactional``. ``expect`` is the run as written (every
mechanism on); each ``ablations`` entry is the same schedule with that one
switch off (harness/ablations.py), and the verdict it must produce: the proof
that the checker catches the broken mechanism.

EXPECTATION: ``{"verdict": "held" | "broken" | "not-exercised" | "stalled" | [one of...],
"min": {anomaly: n}, "max": {anomaly: n}, "fired": {failpoint: n},
"log": {node: "text the node's log must contain"}}``. ``stalled`` means
the pipeline did not drain (a node failed loudly and does not advance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
MODE_LABELS = ("at-most-once", "at-least-once", "exactly-once/idempotent", "exactly-once/transactional")
VERDICTS = ("held", "broken", "not-exercised", "stalled")


class ScenarioError(ValueError):
    """A scenario file is invalid or a name is unknown; the message says which."""


@dataclass
class Scenario:
    name: str
    title: str
    incident: str
    source: str
    config: dict
    steps: list[dict]
    expect: dict[str, dict]
    ablations: dict[str, dict[str, dict]] = field(default_factory=dict)
    path: Path | None = None

    def expectations(self, ablation: str | None = None) -> dict[str, dict]:
        """Mode label -> expectation, for the run as written or with ``ablation`` off.

        Raises:
            ScenarioError: the scenario has no expectation for that ablation.
        """
        if ablation is None:
            return self.expect
        if ablation not in self.ablations:
            raise ScenarioError(f"scenario {self.name} has no expectation with {ablation!r} disabled "
                                f"(it has: {', '.join(self.ablations) or 'none'})")
        return self.ablations[ablation]

    def schedule(self) -> dict:
        """The fault schedule (harness/schedule.py shape) of this scenario."""
        return {"seed": self.config.get("seed", 1), "events": self.config.get("events", 1000),
                "scenario": self.name, "steps": self.steps}


def _validate(obj: dict, path: Path) -> Scenario:
    from harness.ablations import ABLATIONS
    from harness.nemesis import NEMESES
    from harness.nemesis.datadir import KINDS as DATADIR_KINDS, validate_step as datadir_step_error
    from nodes.common.failpoints import REGISTRY

    def bad(msg: str) -> ScenarioError:
        return ScenarioError(f"{path.name}: {msg}")

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("name", "title", "incident", "steps", "expect"):
        if key not in obj:
            raise bad(f"missing {key!r}")
    from harness.scenarios.config import CONFIG_KEYS
    if misplaced := sorted(k for k in obj if k in CONFIG_KEYS):   # was silently ignored there
        raise bad(f"{misplaced[0]!r} belongs in \"config\": {{\"{misplaced[0]}\": ...}}")
    for key, kind in (("name", str), ("title", str), ("steps", list), ("expect", dict),
                      ("ablations", dict), ("config", dict)):
        if key in obj and not isinstance(obj[key], kind):
            raise bad(f"{key!r} should be a {kind.__name__}, got {obj[key]!r:.60}")
    for group, table in [("expect", obj["expect"])] + list(obj.get("ablations", {}).items()):
        if not isinstance(table, dict) or not all(isinstance(e, dict) for e in table.values()):
            raise bad(f"{group}: expected {{mode label: {{\"verdict\": ...}}}}")
    from harness.schedule import ScheduleError, validate_steps
    try:
        validate_steps(obj["steps"], path.name)
    except ScheduleError as e:
        raise ScenarioError(str(e)) from None
    for i, step in enumerate(obj["steps"]):
        if not isinstance(step, dict):
            raise bad(f"step {i} should be an object")
        if "at" not in step or step.get("f") not in NEMESES:
            raise bad(f"step {i} needs 'at' and 'f' in {sorted(NEMESES)}")
        if step["f"] == "failpoint" and step.get("name") not in REGISTRY:
            raise bad(f"step {i}: unknown failpoint {step.get('name')!r}")
        if not isinstance(step.get("must_fire", False), bool):
            raise bad(f"step {i}: 'must_fire' must be true or false")
        if step["f"] in DATADIR_KINDS and (error := datadir_step_error(step)):
            raise bad(f"step {i}: {error}")
    for group, table in [("expect", obj["expect"])] + [(f"ablations.{a}", t) for a, t in
                                                        obj.get("ablations", {}).items()]:
        if group.startswith("ablations.") and group[10:] not in ABLATIONS:
            raise bad(f"unknown ablation {group[10:]!r}")
        for label, exp in table.items():
            if label not in MODE_LABELS:
                raise bad(f"{group}: unknown mode label {label!r}")
            verdicts = exp.get("verdict")
            for v in verdicts if isinstance(verdicts, list) else [verdicts]:
                if v not in VERDICTS:
                    raise bad(f"{group}.{label}: verdict {v!r} not in {VERDICTS}")
            if error := _bounds_error(exp):
                raise bad(f"{group}.{label}: {error}")
    if not obj["expect"]:
        raise bad("'expect' names no mode: nothing to run")
    from harness.scenarios.config import config_error
    if error := config_error(obj.get("config", {})):
        raise bad(error)
    return Scenario(name=obj["name"], title=obj["title"], incident=obj["incident"],
                    source=obj.get("source", ""), config=obj.get("config", {}), steps=obj["steps"],
                    expect=obj["expect"], ablations=obj.get("ablations", {}), path=path)


# The anomaly families the checker reports (harness/checker/report.py's check()): the names an
# expectation's "min" / "max" may bound. An unknown name (a typo) was read as a count of 0, so
# "max" held and "min" failed whatever the run did.
ANOMALIES = ("lost", "lost-acknowledged", "duplicated", "duplicated-in-log", "unexpected", "balance-mismatch",
             "state-mismatch", "reordered", "dead-lettered", "divergent", "truncated", "lost-from-log")


def _bounds_error(exp: dict) -> str | None:
    """What is wrong with an expectation's "min", "max" or "fired", or None."""
    from nodes.common.failpoints import REGISTRY
    for key, names, what in (("min", ANOMALIES, "anomaly"), ("max", ANOMALIES, "anomaly"),
                             ("fired", REGISTRY, "failpoint")):
        bounds = exp.get(key, {})
        if not isinstance(bounds, dict):
            return f"{key!r} should be an object {{{what}: count}}, got {bounds!r:.60}"
        for name, n in bounds.items():
            if name not in names:
                return f"{key}: unknown {what} {name!r}" + (f"; choose from: {', '.join(ANOMALIES)}"
                                                            if what == "anomaly" else "")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                return f"{key}.{name} should be an integer >= 0, got {n!r}"
    return None


def load_file(path: Path) -> Scenario:
    """Raises: ScenarioError: unreadable, not JSON, or invalid."""
    from harness.checker.validate import InputError, read_json
    try:  # missing, a directory, empty, not UTF-8, not (strict) JSON: one line (issue 11)
        obj = read_json(Path(path))
    except InputError as e:
        raise ScenarioError(str(e)) from None
    return _validate(obj, Path(path))


def catalog(directory: Path = CATALOG_DIR) -> dict[str, Scenario]:
    """Every scenario of the catalog, by name, in file-name order."""
    out: dict[str, Scenario] = {}
    for path in sorted(Path(directory).glob("*.json")):
        sc = load_file(path)
        if sc.name in out:
            raise ScenarioError(f"{path.name}: duplicate scenario name {sc.name!r}")
        out[sc.name] = sc
    return out


def get(name: str) -> Scenario:
    """A scenario by name, or a file path.

    Raises:
        ScenarioError: unknown name (the message lists the catalog).
    """
    if name.endswith(".json") or "/" in name:
        if Path(name).is_dir():
            raise ScenarioError(f"{name} is a directory, not a scenario file")
        if Path(name).exists():
            return load_file(Path(name))
        raise ScenarioError(f"no scenario file {name}: it does not exist (a catalog name needs no .json "
                            "or path: ./run.sh scenario list)")
    cat = catalog()
    by_id = {n.split("-", 1)[0]: n for n in cat}   # "s01" for s01-lost-ack-after-append, as the docs say
    name = by_id.get(name, name)
    if name not in cat:
        raise ScenarioError(f"unknown scenario {name!r}; choose from: {', '.join(cat)}")
    return cat[name]


def ablation_coverage() -> dict[str, list[str]]:
    """Ablation name -> scenarios that prove it is caught."""
    cov: dict[str, list[str]] = {}
    for sc in catalog().values():
        for a in sc.ablations:
            cov.setdefault(a, []).append(sc.name)
    return cov
