"""The BYOC ``Livepeer`` header, job parameters, signatures, Go durations and prices."""

from __future__ import annotations

import base64
import json
from fractions import Fraction

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from lpnode.byoc.job_request import (
    JobRequest,
    decode_job_request,
    go_duration,
    parse_parameters,
    signed_message,
    verify_signature,
)
from lpnode.byoc.ledger import Ledger, balance_text, seconds_charged
from lpnode.byoc.registry import Price
from lpnode.errors import BadRequestError


def header(data: object) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def test_a_go_style_header_decodes_and_re_encodes() -> None:
    sent = {"id": "j1", "request": '{"prompt":"x"}', "parameters": "{}", "capability": "echo", "timeout_seconds": 30,
            "capability_url": "http://w:1"}  # fmt: skip
    job = decode_job_request(header(sent))
    assert (job.capability, job.timeout_seconds, job.request, job.extra) == (
        "echo", 30, '{"prompt":"x"}', {"capability_url": "http://w:1"}
    )  # fmt: skip
    again = json.loads(base64.b64decode(job.encode(sender="0xabc")))
    assert again == sent | {"sender": "0xabc", "sig": ""}


def test_url_safe_unpadded_base64_is_accepted() -> None:
    text = header({"capability": "echo", "timeout_seconds": 5}).rstrip("=").replace("+", "-").replace("/", "_")
    assert decode_job_request(text).capability == "echo"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "missing Livepeer header"),
        ("%%%", "not valid base64"),
        (base64.b64encode(b"[1").decode(), "does not hold JSON"),
        (header([1]), "JSON object"),
        (header({"timeout_seconds": 5}), '"capability"'),
        (header({"capability": "c"}), "no timeout_seconds set"),
        (header({"capability": "c", "timeout_seconds": 0}), "no timeout_seconds set"),
        (header({"capability": "c", "timeout_seconds": 1.5}), "whole number"),
        (header({"capability": "c", "timeout_seconds": 5, "request": "{"}), '"request" must be JSON'),
        (header({"capability": "c", "timeout_seconds": 5, "parameters": "[]"}), "JSON object"),
        (header({"capability": "c", "timeout_seconds": 5, "sender": 7}), '"sender" must be a string'),
    ],
)
def test_bad_headers_say_what_is_wrong(value: str | None, words: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        decode_job_request(value)
    assert words in caught.value.message


def test_parameters_name_orchestrators_loosely() -> None:
    params = parse_parameters(json.dumps({"orchestrators": {"include": ["HTTPS://O:8935/"], "exclude": ["p:1"]}}))
    assert params.include == ("https://o:8935",) and params.exclude == ("https://p:1",)
    assert parse_parameters("").include == ()
    with pytest.raises(BadRequestError):
        parse_parameters('{"orchestrators": {"include": "o"}}')


def test_signatures_are_checked_like_go_livepeer() -> None:
    account = Account.create()
    job = JobRequest(capability="c", timeout_seconds=5, request="{}", parameters='{"a":1}')
    sig = Account.sign_message(encode_defunct(primitive=signed_message(job)), account.key).signature
    verify_signature(JobRequest(**{**job.__dict__, "sender": account.address, "sig": sig.hex()}))
    verify_signature(JobRequest(**{**job.__dict__, "sender": account.address.lower(), "sig": "0x" + sig.hex()}))
    verify_signature(job)  # unsigned: nothing to check here
    other = Account.create().address
    with pytest.raises(BadRequestError, match="not the sender's"):
        verify_signature(JobRequest(**{**job.__dict__, "sender": other, "sig": sig.hex()}))
    tampered = JobRequest(**{**job.__dict__, "parameters": "{}", "sender": account.address, "sig": sig.hex()})
    with pytest.raises(BadRequestError, match="not the sender's"):
        verify_signature(tampered)
    high_s = sig[:32] + (2**256 - 1).to_bytes(32, "big") + sig[64:]
    with pytest.raises(BadRequestError, match="malformed"):
        verify_signature(JobRequest(**{**job.__dict__, "sender": account.address, "sig": high_s.hex()}))


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("2.5s", 2.5), ("3", 3.0)])
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text, "t") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1x", "s", "-1s", "0s", "1s garbage"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(BadRequestError):
        go_duration(text, "Livepeer-Orch-Search-Timeout")


def test_prices_and_charges() -> None:
    assert Price(3, 2).wei_per_second == Fraction(3, 2)
    assert Price(1, 0, "eth").wei_per_second == 10**18
    with pytest.raises(BadRequestError, match="on-chain price feed"):
        Price(1, 1, "USD").check()
    with pytest.raises(BadRequestError, match="price_per_unit"):
        Price(-1).check()
    assert [seconds_charged(s) for s in (0.0, 0.2, 1.0, 1.0001, 2.5)] == [1, 1, 1, 2, 3]
    ledger = Ledger(max_accounts=2)
    assert ledger.debit("0xA", "c", Fraction(3, 2)) == Fraction(-3, 2)
    assert balance_text(ledger.balance("0xa", "c")) == "-2"
    ledger.debit("0xb", "c", Fraction(1))
    ledger.debit("0xc", "c", Fraction(1))
    assert ledger.balance("0xa", "c") == 0  # the least recently used account was dropped
