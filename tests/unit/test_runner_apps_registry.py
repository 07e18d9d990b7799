"""The app registry in-process: capacity, session order, tokens, static upserts, expiry, proxy templates."""

from __future__ import annotations

import asyncio
import json

import pytest

from lpnode.orchestrator.runner_apps import AppError, AppRegistry, parse_template
from lpnode.orchestrator.runner_apps.adverts import AdvertError, parse_advert, parse_static_document
from lpnode.protocol.go_duration import format_go_duration, parse_go_duration
from lpnode.trickle import TrickleServer

SVC = "http://localhost:1234"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def registry(clock: Clock | None = None, secret: str = "s") -> AppRegistry:
    return AppRegistry(
        public_url=SVC, runner_url="http://runner-side:1234", orch_secret=secret, trickle=TrickleServer(),
        proxy_template=parse_template("", SVC), clock=clock or Clock(),
    )  # fmt: skip


def beat(reg: AppRegistry, auth: str = "s", **body: object) -> dict[str, object]:
    return reg.heartbeat(json.dumps({"runner_url": "http://app:1/base", "app": "a/b", **body}).encode(), auth)


async def healthy(url: str, code: int) -> bool:
    return True


def test_capacity_two_then_503_and_release_frees_a_slot() -> None:
    reg = registry()
    runner = reg.runner(str(beat(reg, capacity=2)["runner_id"]))
    first, _ = reg.reserve(runner), reg.reserve(runner)
    with pytest.raises(AppError) as refused:
        reg.reserve(runner)
    assert (refused.value.status, refused.value.message) == (503, "no capacity available for runner")
    assert reg.release(runner, first.id) and reg.reserve(runner).id.startswith("session_")


def test_follow_up_heartbeats_list_sessions_oldest_first_and_tokens_are_per_session() -> None:
    clock = Clock()
    reg = registry(clock)
    first = beat(reg, capacity=3)
    runner = reg.runner(str(first["runner_id"]))
    ids = []
    for _ in range(3):
        ids.append(reg.reserve(runner).id)
        clock.now += 1
    answer = beat(reg, str(first["heartbeat_secret"]), runner_id=runner.runner_id, session_ids=["bogus"])
    assert answer["session_ids"] == ids and "heartbeat_secret" not in answer
    assert answer["orchestrator"] == "http://runner-side:1234"
    with pytest.raises(AppError) as wrong:
        reg.authorize(runner.route, ids[0], runner.session_token(ids[1]))
    assert wrong.value.status == 401
    assert reg.authorize(runner.route, ids[0], runner.session_token(ids[0]))[1].id == ids[0]


def test_expired_runner_is_gone_then_swept_and_its_old_secret_refused() -> None:
    clock = Clock()
    reg = registry(clock)
    first = beat(reg)
    runner_id, secret = str(first["runner_id"]), str(first["heartbeat_secret"])
    clock.now += 21
    assert "runners" not in reg.discovery()[0]
    with pytest.raises(AppError) as unswept:
        beat(reg, secret, runner_id=runner_id)
    assert unswept.value.status == 404
    assert reg.sweep() == [runner_id]
    with pytest.raises(AppError) as swept:
        beat(reg, secret, runner_id=runner_id)
    assert (swept.value.status, swept.value.message) == (401, "invalid registration authorization")


def test_no_secret_disables_dynamic_registration() -> None:
    with pytest.raises(AppError) as refused:
        beat(registry(secret=""), "")
    assert (refused.value.status, refused.value.message) == (404, "dynamic live runner registration is disabled")


def test_static_upsert_keeps_id_session_and_price_snapshot_and_moves_routes() -> None:
    reg = registry()
    doc: dict[str, list[dict[str, object]]] = {
        "runners": [{"label": "v", "app": "a", "runner_url": "http://app:1", "health_url": "/h"}]
    }
    (first,) = asyncio.run(reg.register_static(parse_static_document(doc), healthy))
    runner = reg.runner(first["runner_id"])
    session = reg.reserve(runner)
    doc["runners"][0] |= {"routing": "label", "capacity": 4}
    (second,) = asyncio.run(reg.register_static(parse_static_document(doc), healthy))
    assert second["runner_id"] == first["runner_id"] and second["health_url"] == "http://app:1/h"
    assert reg.runner("v").sessions == {session.id: session}
    with pytest.raises(AppError):
        reg.runner(first["runner_id"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"runner_url": "ftp://x"}, "invalid runner_url"),
        ({"mode": "invalid"}, 'mode must be "persistent" or "single-shot"'),
        ({"metadata": "\ufffd"}, "metadata must not contain Unicode replacement character U+FFFD"),
        ({"metadata": "x" * 1025}, "metadata must be at most 1024 bytes"),
        ({"status": " ready"}, "status must be lowercase and trimmed"),
    ],
)
def test_adverts_are_refused_with_go_livepeers_words(body: dict[str, object], message: str) -> None:
    with pytest.raises(AdvertError) as refused:
        parse_advert({"runner_url": "http://a", "app": "x", **body})
    assert str(refused.value) == message


def test_on_chain_prices_are_checked() -> None:
    for price, message in [(None, "price_info.price is required"), ({"price": 0}, "must be a positive decimal"),
                           ({"price": 1, "currency": "eur"}, "currency must be usd"),
                           ({"price": 1, "unit": "minute"}, "unit must be hour, 720p, or fixed")]:  # fmt: skip
        with pytest.raises(AdvertError, match=message):
            parse_advert({"runner_url": "http://a", "app": "x", "price_info": price}, on_chain=True)
    assert parse_advert({"runner_url": "http://a", "app": "x", "price_info": {"price": "wat"}}).price_info is None


def test_proxy_templates_parse_and_match_like_go() -> None:
    path = parse_template("", SVC)
    assert path.url("abc") == SVC + "/run/abc"
    assert path.match("localhost:1234", "/run/abc/v1/foo") == ("abc", "/v1/foo")
    assert path.match("127.0.0.1:1234", "/run/abc/v1/foo") is None
    host = parse_template("http://{proxy}.localhost:9935", SVC)
    assert host.url("Static-Proxy") == "http://static-proxy.localhost:9935"
    assert host.match("ABC.localhost:1", "/x") == ("abc", "/x")
    bad_templates = [
        ("http://x/run", "exactly one"),
        ("ftp://{proxy}.x", "scheme"),
        ("http://x/{proxy}/more", "final path segment"),
        ("http://x/{proxy}/{proxy}", "exactly one"),
    ]
    for bad, reason in bad_templates:
        with pytest.raises(ValueError, match=reason):
            parse_template(bad, SVC)


def test_go_durations_round_trip() -> None:
    assert (format_go_duration(5), format_go_duration(20), format_go_duration(90)) == ("5s", "20s", "1m30s")
    assert parse_go_duration("1m30s") == 90 and parse_go_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_go_duration("5 seconds")
