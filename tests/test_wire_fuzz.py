"""Property-based wire fuzz (issue 11): random and malformed requests for every RPC of
every node and of the proxy's control API, against real node processes started once
for this module. Every answer must be a clean status (never UNKNOWN or INTERNAL),
every node must stay SERVING, and the live processor (consuming whatever the fuzz
produced to the broker, poison included) must keep running.

Reproducible: ``derandomize=True`` (the examples are a function of the test). The
default profile keeps the whole module well under 60 s on 2 cores; the ``slow``
test runs many more examples (./run.sh test --all).
"""

from __future__ import annotations

import json
import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_support import Node, request_strategy
from nodes.pb import broker_pb2, node_pb2, proxy_pb2, sink_pb2

pytestmark = pytest.mark.timeout(300)

BAD = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
QUICK = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))
MANY = settings(QUICK, max_examples=150)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    nodes: dict[str, Node] = {}
    try:
        nodes["broker"] = Node("broker", root / "broker", ["--mode", "at-least-once", "--partitions", "2"])
        nodes["sink"] = Node("sink", root / "sink", ["--mode", "at-least-once"])
        nodes["proxy"] = Node("proxy", root / "proxy", ["--link", "processor-sink",
                                                        "--upstream", nodes["sink"].address])
        nodes["processor"] = Node("processor", root / "processor", [
            "--mode", "at-least-once", "--broker", nodes["broker"].address, "--sink", nodes["sink"].address,
            "--fetch-max-wait-ms", "50"])
        nodes["producer"] = Node("producer", root / "producer", [
            "--mode", "at-least-once", "--broker", nodes["broker"].address, "--count", "50"])
        yield nodes
    finally:
        for n in reversed(list(nodes.values())):
            n.stop()


def _services():
    out = []
    for module, node_names in ((broker_pb2, ["broker"]), (sink_pb2, ["sink"]), (proxy_pb2, ["proxy"]),
                               (node_pb2, ["broker", "sink", "processor", "producer"])):
        for svc in module.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                for node in node_names:
                    out.append((node, f"/{svc.full_name}/{m.name}", m.input_type))
    return out


RPCS = _services()
IDS = [f"{node}:{method.rsplit('/', 1)[1]}" for node, method, _ in RPCS]


SENT: set[tuple[str, str, int]] = set()
"""(node, method, hash of the payload) of every request sent: the distinct inputs covered."""


def call(node: Node, method: str, payload: bytes) -> grpc.StatusCode:
    SENT.add((node.address, method, hash(payload)))
    stub = node.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        # A long-poll Fetch may wait (max_wait_ms); anything else answers well within 10 s
        # even on a loaded machine (a 20,000-order Apply commits and fsyncs).
        stub(payload, timeout=1.0 if method.endswith("/Fetch") else 10.0)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def check_clean(node: Node, method: str, code: grpc.StatusCode, what) -> None:
    assert code not in BAD, (method, code, what)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:   # only a long-poll Fetch may wait
        assert method.endswith("/Fetch"), (method, what)


def run_property(cluster, node_name, method, input_type, settings_) -> None:
    node = cluster[node_name]

    @settings_
    @given(st.one_of(request_strategy(input_type).map(lambda m: m.SerializeToString()),
                     st.binary(max_size=200)))
    def prop(payload: bytes) -> None:
        check_clean(node, method, call(node, method, payload), payload[:80])

    prop()
    for n in cluster.values():
        assert n.proc.poll() is None, f"a node exited during the fuzz of {method}"
    assert node.health() == 1, f"{node_name} not SERVING after the fuzz of {method}"


@pytest.mark.parametrize("node_name,method,input_type", RPCS, ids=IDS)
def test_random_and_malformed_requests_get_a_clean_status(cluster, node_name, method, input_type):
    run_property(cluster, node_name, method, input_type, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("node_name,method,input_type", RPCS, ids=IDS)
def test_many_random_requests_get_a_clean_status(cluster, node_name, method, input_type):
    run_property(cluster, node_name, method, input_type, MANY)


def test_the_live_processor_survived_the_fuzz(cluster):
    """Runs after the fuzz tests (last in the file): whatever the fuzz produced to the broker (poison
    included), the processor runs on and drains to the broker's high watermarks."""
    stub = cluster["processor"].channel.unary_unary(
        "/testbed.v1.NodeControl/Status", request_serializer=node_pb2.StatusRequest.SerializeToString,
        response_deserializer=node_pb2.StatusResponse.FromString)
    offsets = cluster["broker"].channel.unary_unary(
        "/testbed.v1.Broker/ListOffsets", request_serializer=broker_pb2.ListOffsetsRequest.SerializeToString,
        response_deserializer=broker_pb2.ListOffsetsResponse.FromString)
    deadline = time.monotonic() + 30
    while True:
        hw = {str(po.partition): po.offset for po in
              offsets(broker_pb2.ListOffsetsRequest(topic="orders"), timeout=5).high_watermarks}
        st_ = json.loads(stub(node_pb2.StatusRequest(), timeout=5).status_json)
        assert st_["phase"] == "running", st_
        if st_["durable_positions"] == hw:
            break
        assert time.monotonic() < deadline, f"processor not drained: {st_['durable_positions']} vs {hw}"
        time.sleep(0.1)
    print(f"wire fuzz: {len(SENT)} distinct requests over {len({m for _, m, _ in SENT})} methods; "
          f"processor: {st_['records']} records, {st_['dead_lettered']} dead-lettered")
