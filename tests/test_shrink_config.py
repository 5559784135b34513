"""The shrunk scenario keeps the system under test (broker, NATS / MQTT settings, consumer
group). Before, ``shrink`` of an s18 run (2 processors) wrote a scenario with none of
these keys: it replayed with one processor on the builtin broker."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from harness import scenarios
from harness.cli_shrink import scenario_for


def _shrunk(tmp_path: Path, base: dict) -> dict:
    best = SimpleNamespace(labels=["at-most-once"], events=150, key=lambda: "k",
                           steps=[{"at": 0, "f": "zombie", "node": "processor", "nth": 1}])
    sh = SimpleNamespace(base={"seed": 18, "batch_size": 20, "rate": 200.0, **base}, drain_timeout_s=60.0,
                         results={}, target=SimpleNamespace(families={"at-most-once": {"duplicated"}}),
                         run_dir=tmp_path / "run", schedule={"steps": best.steps}, runs=3)
    return scenario_for(sh, best, minimal=True)


def test_group_and_broker_settings_survive_the_shrink(tmp_path):
    sc = _shrunk(tmp_path, {"broker": "builtin", "processors": 2, "session_timeout_ms": 1000,
                            "disabled": ["generation-fencing"], "nats_url": None, "mqtt_autosave": "default"})
    assert sc["config"]["processors"] == 2 and sc["config"]["session_timeout_ms"] == 1000
    assert "broker" not in sc["config"] and "nats_url" not in sc["config"]   # defaults stay implicit
    path = tmp_path / "shrunk.json"
    path.write_text(__import__("json").dumps(sc))
    assert scenarios.load_file(path).config["processors"] == 2   # and it loads


def test_mqtt_and_nats_settings_survive_the_shrink(tmp_path):
    mq = _shrunk(tmp_path, {"broker": "mosquitto", "mqtt_autosave": "always", "mqtt_subscribe_qos": 1})
    assert (mq["config"]["broker"], mq["config"]["mqtt_autosave"], mq["config"]["mqtt_subscribe_qos"]) \
        == ("mosquitto", "always", 1)
    nats = _shrunk(tmp_path, {"broker": "nats", "nats_sync": "always"})
    assert (nats["config"]["broker"], nats["config"]["nats_sync"]) == ("nats", "always")
