"""How BYOC's JSON carries what payments need on chain: sender addresses as hex, and go-livepeer's
``net.TicketParams`` as Go's encoding/json writes it (in the job token)."""

from __future__ import annotations

import base64
from typing import Any

from lpnode.errors import BadRequestError
from lpnode.protocol.lp_rpc_pb2 import TicketParams


def address_bytes(text: str) -> bytes:
    """The 20 bytes of an ``0x`` address; 400 ``Could not verify job creds`` when it is not one."""
    try:
        return bytes.fromhex(text.strip().removeprefix("0x").removeprefix("0X"))[-20:].rjust(20, b"\x00")
    except ValueError:
        raise BadRequestError(f"Could not verify job creds: {text!r} is not an address") from None


def ticket_params_json(params: TicketParams) -> dict[str, Any]:
    """``net.TicketParams`` as Go's encoding/json writes it: proto field names, bytes in standard base64."""

    def b64(value: bytes) -> str:
        return base64.b64encode(bytes(value)).decode()

    out: dict[str, Any] = {
        name: b64(getattr(params, name))
        for name in ("recipient", "face_value", "win_prob", "recipient_rand_hash", "seed", "expiration_block")
        if getattr(params, name)
    }
    expiration: dict[str, Any] = {}
    if params.expiration_params.creation_round:
        expiration["creation_round"] = params.expiration_params.creation_round
    if params.expiration_params.creation_round_block_hash:
        expiration["creation_round_block_hash"] = b64(params.expiration_params.creation_round_block_hash)
    if expiration:
        out["expiration_params"] = expiration
    return out
