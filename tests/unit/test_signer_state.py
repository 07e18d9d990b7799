"""The signer's pure pieces: the signed state in go-livepeer's JSON, maxPrice parsing, webhook header parsing,
discovery's runner and address checks."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from lpnode.payments.signatures import address_of
from lpnode.protocol.remote_signer import PaymentRequest, SignedState
from lpnode.signer.ceilings import CeilingError, check, parse_max_price
from lpnode.signer.discovery import is_address, runner_problem
from lpnode.signer.state import PaymentState, StateError, format_time, open_state, parse_time, seal
from lpnode.signer.webhook import canonical_header, parse_webhook_headers

KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")


def test_the_state_is_gos_json_and_round_trips_through_its_signature() -> None:
    state = PaymentState.new(bytes(range(20)), 150, 7, "lv2v", "app")
    state.balance = Fraction(6000, 7)
    state.last_update_ns = 1_700_000_000_123_450_000
    signed = seal(state, KEY)
    raw = json.loads(signed.state)
    assert list(raw) == ["StateID", "PMSessionID", "LastUpdate", "OrchestratorAddress", "App", "AuthExpiry",
                         "SenderNonce", "Balance", "InitialPricePerUnit", "InitialPixelsPerUnit", "Type",
                         "SequenceNumber", "AuthID"]  # fmt: skip
    assert raw["Balance"] == "6000/7" and raw["LastUpdate"] == "2023-11-14T22:13:20.12345Z"
    assert raw["OrchestratorAddress"] == "0x" + bytes(range(20)).hex() and len(raw["StateID"]) == 8
    assert open_state(signed, address_of(KEY)) == state
    with pytest.raises(StateError, match=r"^invalid sig$"):
        open_state(SignedState(signed.state.replace(b"6000", b"9000"), signed.sig), address_of(KEY))
    with pytest.raises(StateError, match=r"^invalid state$"):
        open_state(seal_raw(b"not json"), address_of(KEY))


def seal_raw(data: bytes) -> SignedState:
    from lpnode.payments.signatures import sign

    return SignedState(data, sign(KEY, data))


def test_go_times_parse_and_format() -> None:
    assert format_time(0) == "0001-01-01T00:00:00Z" and parse_time("0001-01-01T00:00:00Z") == 0
    assert parse_time("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    assert format_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ({"price": 101.2, "currency": "wei", "unit": "seconds"}, "live", Fraction(506, 5)),
        ({"price": "101.2", "currency": " WEI ", "unit": "Seconds"}, "live", Fraction(506, 5)),
        ({"price": "wat", "currency": "wei", "unit": "seconds"}, "live", "maxPrice.price must be a positive decimal"),
        ({"price": -1, "currency": "wei", "unit": "seconds"}, "live", "maxPrice.price must be a positive decimal"),
        ({"price": 1, "unit": "seconds"}, "live", "maxPrice.currency must be wei"),
        ({"price": 1, "currency": "wei", "unit": "fixed"}, "lv2v",
         "maxPrice.unit must be 720p-pixel-seconds for payment type lv2v"),
        ({"price": 1, "currency": "wei", "unit": "fixed"}, "", "maxPrice requires payment type live, lv2v, or fixed"),
    ],
)  # fmt: skip
def test_max_price_is_parsed_as_go_does(value: dict[str, object], kind: str, expected: object) -> None:
    if isinstance(expected, Fraction):
        assert parse_max_price(value, kind) == expected
    else:
        with pytest.raises(ValueError, match=f"^{expected}$"):
            parse_max_price(value, kind)


def test_the_lowest_ceiling_wins_and_equality_passes() -> None:
    check(Fraction(500), ("configured maximum price", Fraction(500)), ("request maxPrice", None))
    with pytest.raises(CeilingError, match=r"^orchestrator price 300\.000 exceeds request maxPrice ceiling 200\.000"):
        check(Fraction(300), ("configured maximum price", Fraction(500)), ("request maxPrice", Fraction(200)))


def test_webhook_headers_and_canonical_names() -> None:
    assert parse_webhook_headers(" Authorization : Bearer x:y , :dropped, X-A:1") == {
        "Authorization": "Bearer x:y",
        "X-A": "1",
    }
    assert canonical_header("x-request-id") == "X-Request-Id"


def test_a_client_request_carries_gos_field_names() -> None:
    request = PaymentRequest(b"\x01", type="live", manifest_id="m", state=SignedState(b"s", b"g"))
    assert request.to_json() == {
        "orchestrator": "AQ==", "type": "live", "state": {"State": "cw==", "Sig": "Zw=="}, "ManifestID": "m",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, ""),
        ({"metadata": "é" * 512}, ""),  # 1,024 bytes
        ({"metadata": "é" * 512 + "x"}, "invalid metadata: over 1024 bytes"),
        ({"metadata": "\ud800"}, "invalid metadata: not valid UTF-8"),
        ({"metadata": "\ufffd"}, "invalid metadata: contains U+FFFD"),
        ({"app": " "}, "missing app"),
        ({"price_info": {"price": "1e3", "currency": "Wei ", "unit": " Seconds"}}, ""),
        ({"price_info": {"price": 1001, "currency": "wei", "unit": "fixed"}}, "above global max price"),
        ({"price_info": {"price": True, "currency": "wei", "unit": "fixed"}}, "invalid price"),
    ],
)  # fmt: skip
def test_discovery_runner_records_are_checked_as_go_does(change: dict[str, object], problem: str) -> None:
    record = {"url": "https://o/apps/a", "app": "a", "price_info": {"price": 5, "currency": "wei", "unit": "seconds"}}
    assert runner_problem({**record, **change}, Fraction(1000)) == problem


def test_only_absolute_urls_are_orchestrator_addresses() -> None:
    assert is_address("https://o.example.com:8935/") and is_address("http://127.0.0.1:1")
    assert not any(is_address(a) for a in ("://invalid-uri", "o.example.com:8935", "/path", "", None, "http://[::1"))
