"""go-livepeer's /getNetworkCapabilities and /getAISessionPoolsInfo JSON.

The expected texts were produced by Go's encoding/json over structs with protoc-gen-go's json tags.
"""

from __future__ import annotations

import json

import pytest

from lpnode.gateway.network_caps import (
    CAPABILITY_NAMES,
    NEVER_REFRESHED,
    ZERO_ADDRESS,
    PooledOrchestrator,
    PoolSide,
    PoolSnapshot,
    eth_address_hex,
    go_json,
    go_proto_json,
    network_capabilities,
    rfc3339,
    session_pools_info,
)
from lpnode.protocol.lp_rpc_pb2 import (
    AuthToken,
    Capabilities,
    GPUComputeInfo,
    HardwareInformation,
    OrchestratorInfo,
    PriceInfo,
    TicketExpirationParams,
    TicketParams,
)

LLM = "meta-llama/Meta-Llama-3.1-8B-Instruct"
SDXL = "ByteDance/SDXL-Lightning"
ORCH = bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
RECIPIENT = bytes.fromhex("fb6916095ca1df60bb79ce92ce3ea74c37c5d359")
Model = Capabilities.CapabilityConstraints.ModelConstraint
PerCap = Capabilities.CapabilityConstraints

NAMES_TEXT = (
    b'{"-1":"Unused","-2":"Invalid","0":"H.264","1":"MPEGTS","10":"H264 Constrained, Contained High profile",'
    b'"11":"GOP","12":"Auth token","14":"MPEG7 signature","15":"HEVC decode","16":"HEVC encode","17":"VP8 decode",'
    b'"18":"VP9 decode","19":"VP8 encode","2":"MP4","20":"VP9 encode","21":"H264 Decode YUV444 8-bit",'
    b'"22":"H264 Decode YUV422 8-bit","23":"H264 Decode YUV444 10-bit","24":"H264 Decode YUV422 10-bit",'
    b'"25":"H264 Decode YUV420 10-bit","26":"Segment slicing","27":"Text to image","28":"Image to image",'
    b'"29":"Image to video","3":"Fractional framerates","30":"Upscale","31":"Audio to text","32":"Segment anything 2",'
    b'"33":"Llm","34":"Image to text","35":"Live video to video","36":"Text to speech","37":"byoc",'
    b'"4":"Storage direct","5":"Storage S3","6":"Storage GCS","7":"H264 Baseline profile","8":"H264 Main profile",'
    b'"9":"H264 High profile"}'
)


def _two_model_info() -> OrchestratorInfo:
    return OrchestratorInfo(
        transcoder="https://o.example:8935",
        address=ORCH,
        ticket_params=TicketParams(recipient=RECIPIENT, face_value=b"\x01"),
        price_info=PriceInfo(pricePerUnit=1, pixelsPerUnit=1),
        capabilities=Capabilities(
            bitstring=[(1 << 12) | (1 << 27) | (1 << 33)],
            mandatories=[1 << 12],
            capacities={33: 2, 27: 1, 5: 1},
            version="0.9.1",
            constraints=Capabilities.Constraints(
                PerCapability={
                    33: PerCap(models={LLM: Model(warm=False, capacity=0, runnerVersion="0.14.1"), "a/b": Model()}),
                    27: PerCap(models={SDXL: Model(warm=True, capacity=1, runnerVersion="0.14.1")}),
                }
            ),
        ),
        capabilities_prices=[
            PriceInfo(pricePerUnit=4768371, pixelsPerUnit=1, capability=27, constraint=SDXL),
            PriceInfo(pricePerUnit=9007199254740993, pixelsPerUnit=1000000, capability=33, constraint=LLM),
        ],
        hardware=[
            HardwareInformation(
                pipeline="llm",
                model_id=LLM,
                gpu_info={
                    "1": GPUComputeInfo(id="GPU-b", name="NVIDIA <RTX>", major=8, memory_free=17179869185),
                    "0": GPUComputeInfo(id="GPU-a", name="NVIDIA GeForce RTX 4090", major=8, minor=9),
                    "10": GPUComputeInfo(),
                },
            )
        ],
        auth_token=AuthToken(token=b"secret", session_id="s", expiration=5),
        nodes=["https://other:8935"],
    )


def _offchain_info() -> OrchestratorInfo:
    return OrchestratorInfo(
        capabilities=Capabilities(
            bitstring=[1 << 33],
            capacities={33: 1},
            version="0.1.0",
            constraints=Capabilities.Constraints(
                PerCapability={33: PerCap(models={"m": Model(warm=True, capacity=1)})}
            ),
        )
    )


def test_exact_text_of_an_offchain_orchestrator() -> None:
    body = network_capabilities([("http://127.0.0.1:8935", _offchain_info())])
    assert go_json(body) == (
        b'{"capabilities_names":' + NAMES_TEXT + b',"orchestrators":[{'
        b'"address":"0x0000000000000000000000000000000000000000",'
        b'"local_address":"0x0000000000000000000000000000000000000000",'
        b'"orch_uri":"http://127.0.0.1:8935",'
        b'"capabilities":{"bitstring":[8589934592],"capacities":{"33":1},"version":"0.1.0",'
        b'"constraints":{"PerCapability":{"33":{"models":{"m":{"warm":true,"capacity":1}}}}}},'
        b'"price_info":null,"capabilities_prices":null,"hardware":null}]}'
    )
    assert json.loads(go_json(body)) == body


def test_two_models_with_prices_and_hardware() -> None:
    (orch,) = network_capabilities([("https://ignored:1", _two_model_info())])["orchestrators"]
    assert orch == {
        "address": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "local_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "orch_uri": "https://o.example:8935",
        "capabilities": {
            "bitstring": [(1 << 12) | (1 << 27) | (1 << 33)],
            "mandatories": [4096],
            "capacities": {"27": 1, "33": 2, "5": 1},
            "version": "0.9.1",
            "constraints": {
                "PerCapability": {
                    "27": {"models": {SDXL: {"warm": True, "capacity": 1, "runnerVersion": "0.14.1"}}},
                    "33": {"models": {"a/b": {}, LLM: {"runnerVersion": "0.14.1"}}},
                }
            },
        },
        "price_info": {"pricePerUnit": 1, "pixelsPerUnit": 1},
        "capabilities_prices": [
            {"pricePerUnit": 4768371, "pixelsPerUnit": 1, "capability": 27, "constraint": SDXL},
            {"pricePerUnit": 9007199254740993, "pixelsPerUnit": 1000000, "capability": 33, "constraint": LLM},
        ],
        "hardware": [
            {
                "pipeline": "llm",
                "model_id": LLM,
                "gpu_info": {
                    "0": {"id": "GPU-a", "name": "NVIDIA GeForce RTX 4090", "major": 8, "minor": 9},
                    "1": {"id": "GPU-b", "name": "NVIDIA <RTX>", "major": 8, "memory_free": 17179869185},
                    "10": {},
                },
            }
        ],
    }
    # Go's key order: map keys sorted as strings; struct fields in declaration order.
    assert list(orch["capabilities"]["capacities"]) == ["27", "33", "5"]
    assert list(orch["hardware"][0]["gpu_info"]) == ["0", "1", "10"]
    assert list(orch["capabilities"]["constraints"]["PerCapability"]["33"]["models"]) == ["a/b", LLM]
    text = go_json(orch)
    assert b'"pricePerUnit":9007199254740993,' in text  # int64 is a number, not protobuf JSON's string
    assert b'"name":"NVIDIA \\u003cRTX\\u003e"' in text  # Go's HTML-safe escaping
    assert b"auth_token" not in text and b"nodes" not in text and b"ticket_params" not in text


def test_omitempty_and_null() -> None:
    info = OrchestratorInfo(transcoder="", capabilities=Capabilities(constraints=Capabilities.Constraints()))
    (orch,) = network_capabilities([("https://fallback:8935", info)])["orchestrators"]
    assert orch["orch_uri"] == "https://fallback:8935"
    assert orch["capabilities"] == {"constraints": {}}  # a present, empty message is {}
    assert orch["price_info"] is None and orch["capabilities_prices"] is None and orch["hardware"] is None
    assert orch["address"] == orch["local_address"] == ZERO_ADDRESS
    bare = network_capabilities([("u", OrchestratorInfo())])["orchestrators"][0]
    assert bare["capabilities"] is None
    assert network_capabilities([])["orchestrators"] == []


def test_bytes_are_base64_and_zero_scalars_are_left_out() -> None:
    params = TicketParams(recipient=b"\x01\x02", seed=b"", expiration_params=TicketExpirationParams(creation_round=0))
    assert go_proto_json(params) == {"recipient": "AQI=", "expiration_params": {}}
    assert go_proto_json(PriceInfo(pricePerUnit=-5, pixelsPerUnit=0)) == {"pricePerUnit": -5}


def test_capability_names() -> None:
    assert list(CAPABILITY_NAMES) == [n for n in range(-2, 38) if n != 13]
    assert CAPABILITY_NAMES[33] == "Llm" and CAPABILITY_NAMES[37] == "byoc" and CAPABILITY_NAMES[-2] == "Invalid"
    names = network_capabilities([])["capabilities_names"]
    assert "13" not in names and len(names) == 39
    assert go_json(names) == NAMES_TEXT


def test_eip55_addresses() -> None:
    for address in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ):
        assert eth_address_hex(bytes.fromhex(address[2:])) == address
    assert eth_address_hex(b"") == ZERO_ADDRESS
    assert eth_address_hex(b"\xff" * 12 + ORCH) == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # last 20 bytes
    assert eth_address_hex(b"\x01") == "0x0000000000000000000000000000000000000001"  # left-padded


def _pools() -> dict[str, PoolSnapshot]:
    warm = PoolSide(
        [PooledOrchestrator("https://a:8935", 0.000002, 1), PooledOrchestrator("https://b:8935", 1.5e-7, 0)], 1
    )
    return {
        "Text to image_" + SDXL: PoolSnapshot(
            warm=PoolSide([PooledOrchestrator("https://a:8935", 12.0, 0)], 0),
            cold=PoolSide([PooledOrchestrator("https://d:8935", 1e21, 0)], 0),
            last_refresh=0,
            suspended={},
            current_count=0,
        ),
        "Llm_" + LLM: PoolSnapshot(
            warm=warm,
            cold=PoolSide([], 0),
            last_refresh=1700000000.123456,
            suspended={"https://z:8935": 3, "https://c:8935": 4},
            current_count=1,
        ),
    }


def test_session_pools_exact_text() -> None:
    assert go_json(session_pools_info(_pools())) == (
        b'{"Llm_meta-llama/Meta-Llama-3.1-8B-Instruct":{"cold":{"size":0,"in_use":0,"orchestrators":null},'
        b'"warm":{"size":2,"in_use":1,"orchestrators":[{"url":"https://a:8935","latency_score":0.000002,"in_flight":1},'
        b'{"url":"https://b:8935","latency_score":1.5e-7,"in_flight":0}]},"last_refresh":"2023-11-14T22:13:20.123456Z",'
        b'"suspended":{"list":{"https://c:8935":4,"https://z:8935":3},"current_count":1}},'
        b'"Text to image_ByteDance/SDXL-Lightning":{"cold":{"size":1,"in_use":0,"orchestrators":'
        b'[{"url":"https://d:8935","latency_score":1e+21,"in_flight":0}]},"warm":{"size":1,"in_use":0,"orchestrators":'
        b'[{"url":"https://a:8935","latency_score":12,"in_flight":0}]},"last_refresh":"0001-01-01T00:00:00Z",'
        b'"suspended":{"list":{},"current_count":0}}}'
    )
    assert session_pools_info({}) == {}


def test_non_finite_latency_is_null() -> None:
    side = PoolSide([PooledOrchestrator("u", float("inf"), 0)], 0)
    info = session_pools_info({"k": PoolSnapshot(side, PoolSide([], 0), 1.0, {}, 0)})
    assert info["k"]["warm"]["orchestrators"][0]["latency_score"] is None
    with pytest.raises(ValueError):
        go_json(float("nan"))


def test_rfc3339() -> None:
    assert rfc3339(0) == NEVER_REFRESHED == "0001-01-01T00:00:00Z"
    assert rfc3339(1700000000) == "2023-11-14T22:13:20Z"
    assert rfc3339(1700000000.5) == "2023-11-14T22:13:20.5Z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, b"0"),
        (-0.0, b"-0"),
        (1.0, b"1"),
        (0.5, b"0.5"),
        (1e-6, b"0.000001"),
        (9.99e-7, b"9.99e-7"),
        (1e-10, b"1e-10"),
        (1e20, b"100000000000000000000"),
        (1e21, b"1e+21"),
        (-1.6562539291866800128e19, b"-16562539291866800000"),
        (1.5e300, b"1.5e+300"),
    ],
)
def test_go_float_format(value: float, text: bytes) -> None:
    assert go_json(value) == text


def test_go_json_strings_and_containers() -> None:
    assert go_json(["a<b>&c", "\u2028\u2029", "é", "tab\there", "\x01"]) == (
        b'["a\\u003cb\\u003e\\u0026c","\\u2028\\u2029","\xc3\xa9","tab\\there","\\u0001"]'
    )
    assert go_json({"b": [True, False, None], "a": (1,)}) == b'{"b":[true,false,null],"a":[1]}'
    with pytest.raises(TypeError):
        go_json(object())
