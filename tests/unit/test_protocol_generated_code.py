"""The checked-in lp_rpc_pb2 files are what scripts/gen-proto makes from lp_rpc.proto, and match go-livepeer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lpnode.protocol import lp_rpc_pb2

ROOT = Path(__file__).resolve().parents[2]
GEN = [sys.executable, str(ROOT / "scripts" / "gen-proto")]
CHECKED_IN = ROOT / "src" / "lpnode" / "protocol"


@pytest.mark.processes  # runs scripts/gen-proto
def test_checked_in_generated_code_matches_the_proto(tmp_path: Path) -> None:
    result = subprocess.run([*GEN, "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("lp_rpc_pb2.py", "lp_rpc_pb2.pyi"):
        assert (tmp_path / name).read_bytes() == (CHECKED_IN / name).read_bytes(), (
            f"{name} is out of date; run `.venv/bin/python scripts/gen-proto`"
        )


@pytest.mark.processes  # runs scripts/gen-proto
def test_gen_proto_check_fails_on_drift(tmp_path: Path) -> None:
    for name in ("lp_rpc_pb2.py", "lp_rpc_pb2.pyi"):
        shutil.copy(CHECKED_IN / name, tmp_path / name)
    assert subprocess.run([*GEN, "--check", "--out", str(tmp_path)], capture_output=True, timeout=60).returncode == 0
    (tmp_path / "lp_rpc_pb2.pyi").write_text("stale\n")
    result = subprocess.run([*GEN, "--check", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "lp_rpc_pb2.pyi" in result.stderr and "out of date" in result.stderr and "gen-proto" in result.stderr


# (message, field) -> number, from go-livepeer's net/lp_rpc.proto.
GO_LIVEPEER_FIELDS = {
    ("OrchestratorRequest", "address"): 1,
    ("OrchestratorRequest", "sig"): 2,
    ("OrchestratorRequest", "capabilities"): 3,
    ("OrchestratorRequest", "ignoreCapacityCheck"): 4,
    ("OrchestratorInfo", "transcoder"): 1,
    ("OrchestratorInfo", "ticket_params"): 2,
    ("OrchestratorInfo", "price_info"): 3,
    ("OrchestratorInfo", "address"): 4,
    ("OrchestratorInfo", "capabilities"): 5,
    ("OrchestratorInfo", "auth_token"): 6,
    ("OrchestratorInfo", "hardware"): 7,
    ("OrchestratorInfo", "storage"): 32,
    ("OrchestratorInfo", "capabilities_prices"): 33,
    ("OrchestratorInfo", "nodes"): 34,
    ("PriceInfo", "pricePerUnit"): 1,
    ("PriceInfo", "pixelsPerUnit"): 2,
    ("PriceInfo", "capability"): 3,
    ("PriceInfo", "constraint"): 4,
    ("Capabilities", "bitstring"): 1,
    ("Capabilities", "mandatories"): 2,
    ("Capabilities", "capacities"): 3,
    ("Capabilities", "version"): 4,
    ("Capabilities", "constraints"): 5,
    ("Capabilities.Constraints", "minVersion"): 1,
    ("Capabilities.Constraints", "PerCapability"): 2,
    ("Capabilities.CapabilityConstraints", "models"): 1,
    ("Capabilities.CapabilityConstraints.ModelConstraint", "warm"): 1,
    ("Capabilities.CapabilityConstraints.ModelConstraint", "capacity"): 2,
    ("Capabilities.CapabilityConstraints.ModelConstraint", "runnerVersion"): 3,
    ("Capabilities.CapabilityConstraints.ModelConstraint", "capacityInUse"): 4,
    ("AuthToken", "token"): 1,
    ("AuthToken", "session_id"): 2,
    ("AuthToken", "expiration"): 3,
    ("TicketParams", "recipient"): 1,
    ("TicketParams", "expiration_params"): 7,
    ("SegData", "manifestId"): 1,
    ("SegData", "capabilities"): 7,
    ("SegData", "auth_token"): 8,
    ("SegData", "storage"): 32,
    ("Payment", "expected_price"): 5,
    ("PaymentResult", "info"): 16,
    ("HardwareInformation", "gpu_info"): 3,
    ("GPUComputeInfo", "major"): 4,
    ("GPUComputeInfo", "memory_total"): 7,
    ("OSInfo", "s3info"): 16,
    ("NotifyAIJob", "taskId"): 2,
}


@pytest.mark.parametrize(("message", "field"), sorted(GO_LIVEPEER_FIELDS))
def test_field_numbers_are_go_livepeers(message: str, field: str) -> None:
    descriptor = lp_rpc_pb2.DESCRIPTOR.message_types_by_name[message.split(".")[0]]
    for nested in message.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[nested]
    assert descriptor.fields_by_name[field].number == GO_LIVEPEER_FIELDS[(message, field)]


def test_service_path_is_go_livepeers() -> None:
    method = lp_rpc_pb2.DESCRIPTOR.services_by_name["Orchestrator"].methods_by_name["GetOrchestrator"]
    assert f"/{method.containing_service.full_name}/{method.name}" == "/net.Orchestrator/GetOrchestrator"
