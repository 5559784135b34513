"""Checks of a scenario's ``config`` keys that pick the system under test.

``processors``, ``session_timeout_ms``, ``broker``, ``mqtt_autosave`` and
``nats_url`` are read by the runner with ``int()`` / ``str()``; without these
checks a string gave a traceback, ``0`` or ``true`` ran a cluster with no or one
processor, ``17`` failed in the middle of a cluster start and a negative session
timeout was refused by the processor process, all after nodes had been started.
Each check gives one line naming the key (the CLI's exit 2), before anything runs.
"""

from __future__ import annotations

BROKERS = ("builtin", "nats", "mosquitto")
SESSION_TIMEOUT_MS = (100, 300_000)   # the processor's --session-timeout-ms range
CONFIG_KEYS = ("seed", "events", "storage", "rate", "batch_size", "disabled", "fetch_group",
               "sequential_sends", "broker", "nats_sync", "nats_url", "mqtt_autosave",
               "mqtt_subscribe_qos", "extra_args", "processors", "session_timeout_ms",
               "drain_timeout_s", "stuck_s")
"""The keys the runner reads from a scenario's ``config`` (harness/scenarios/runner.py)."""


def _int_in(config: dict, key: str, low: int, high: int) -> str | None:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int):
        return f"config {key!r} should be an integer, got {value!r:.60}"
    if not low <= value <= high:
        return f"config {key!r} should be in {low}..{high}, got {value}"
    return None


def config_error(config: dict) -> str | None:
    """Why the scenario's ``config`` cannot run (one line), or None.

    Refuses a key the runner does not read (CONFIG_KEYS). Checks only the keys present: processors (1..MAX_MEMBERS, an integer), session_timeout_ms
    (100..300,000 ms), broker (builtin|nats|mosquitto), mqtt_autosave (default|always|seconds
    >= 1, harness/mosquitto.py), nats_url (a non-empty string).
    """
    from nodes.proxy.links import MAX_MEMBERS
    if unknown := [k for k in config if k not in CONFIG_KEYS]:
        import difflib
        close = difflib.get_close_matches(str(unknown[0]).lower(), CONFIG_KEYS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"config: unknown key {unknown[0]!r:.60}{hint}: refused, not ignored; "
                f"known keys: {', '.join(CONFIG_KEYS)}")
    if error := _run_keys_error(config):
        return error
    if "processors" in config and (error := _int_in(config, "processors", 1, MAX_MEMBERS)):
        return error
    if "session_timeout_ms" in config and (error := _int_in(config, "session_timeout_ms",
                                                            *SESSION_TIMEOUT_MS)):
        return error
    if "broker" in config and config["broker"] not in BROKERS:
        return f"config 'broker' should be one of {', '.join(BROKERS)}, got {config['broker']!r:.60}"
    if "mqtt_autosave" in config:
        from harness.mosquitto import check_autosave
        value = config["mqtt_autosave"]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return f"config 'mqtt_autosave' should be default, always or seconds, got {value!r:.60}"
        try:
            check_autosave(str(value))
        except ValueError as e:
            return f"config 'mqtt_autosave': {str(e).split(': ', 1)[1]}"
    if "nats_url" in config and (not isinstance(config["nats_url"], str) or not config["nats_url"].strip()):
        return f"config 'nats_url' should be a non-empty string nats://HOST:PORT[,...], got {config['nats_url']!r:.60}"
    return None


def _number_in(config: dict, key: str, low: float, integer: bool) -> str | None:
    value = config[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value or value in (
            float("inf"), float("-inf")):
        return f"config {key!r} should be {'an integer' if integer else 'a number'}, got {value!r:.60}"
    if value < low:
        return f"config {key!r} should be >= {low}, got {value}"
    return None


def _run_keys_error(config: dict) -> str | None:
    """The keys ``shrink`` writes into a shrunk scenario (events, seed, batch_size, rate,
    fetch_group, drain_timeout_s, disabled, sequential_sends) and the run's storage /
    nats_sync / stuck_s: the runner reads them with ``int()`` / ``float()`` / ABLATIONS[...];
    a user editing a shrunk scenario got a KeyError or ValueError traceback (exit 1) for a
    string, an unknown ablation or a bare ablation name instead of a list."""
    from harness.ablations import ABLATIONS
    from harness.cli_common import MAX_EVENTS
    for key, low, integer in (("events", 1, True), ("seed", 0, True), ("batch_size", 1, True),
                              ("fetch_group", 0, True), ("rate", 0, False),
                              ("drain_timeout_s", 1, False), ("stuck_s", 1, False)):
        if key in config and (error := _number_in(config, key, low, integer)):
            return error
    if "events" in config and config["events"] > MAX_EVENTS:
        return f"config 'events' should be at most {MAX_EVENTS:,}, got {config['events']}"
    if "disabled" in config:
        names = config["disabled"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return f"config 'disabled' should be a list of ablation names, got {names!r:.60}"
        if unknown := [n for n in names if n not in ABLATIONS]:
            return f"config 'disabled': unknown ablation {unknown[0]!r:.60}; choose from: {', '.join(ABLATIONS)}"
    if "sequential_sends" in config and not isinstance(config["sequential_sends"], bool):
        return f"config 'sequential_sends' should be true or false, got {config['sequential_sends']!r:.60}"
    for key, choices in (("storage", ("direct", "lazy")), ("nats_sync", ("default", "always"))):
        if key in config and config[key] not in choices:
            return f"config {key!r} should be one of {', '.join(choices)}, got {config[key]!r:.60}"
    return None
