"""The gateway's state interface (lpnode.gateway.state), run against both backends: SQLite files and a real
PostgreSQL server the module starts and stops itself. Then what only the shared backend promises: limits counted
across gateways, leases of a dead gateway expiring, tables made safely by gateways starting together, and a
database password that never shows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lpnode.errors import ConfigError, TooManyRequestsError, UnauthorizedError
from lpnode.gateway import state_postgres
from lpnode.gateway.key_guard import KeyGuard
from lpnode.gateway.keys import KeyStore
from lpnode.gateway.state import (
    AppSessionRecord,
    GatewayState,
    KeyNameTaken,
    KeyRecord,
    Refusal,
    UsageRecord,
    check_db_url,
    masked_url,
    open_state,
    scrub,
)
from lpnode.gateway.state_postgres import PostgresState
from lpnode.gateway.usage import UsageLog
from postgres_server import PostgresServer, postgres_server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.processes)])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayState]:
    if request.param == "sqlite":
        opened = open_state(tmp_path)
    else:
        opened = open_state(tmp_path, request.getfixturevalue("postgres").database())
    try:
        yield opened
    finally:
        opened.close()


def bearer(key: str) -> str:
    return f"Bearer {key}"


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_keys_are_stored_found_by_hash_and_revoked(state: GatewayState) -> None:
    first = state.add_key("alice", "abcdefgh", "h1", 100.0, 60, 2)
    second = state.add_key("bob", "ijklmnop", "h2", 101.0, None, None)
    assert second > first
    with pytest.raises(KeyNameTaken):
        state.add_key("alice", "qrstuvwx", "h3", 102.0, None, None)
    alice = KeyRecord(first, "alice", "abcdefgh", 100.0, None, 60, 2)
    assert state.key_by_hash("h1") == alice
    assert state.key_by_id(first) == alice
    assert state.active_key_named("alice") == alice
    assert state.key_by_hash("nope") is None
    assert state.revoke_key(first, 200.0)
    assert not state.revoke_key(first, 300.0)
    assert state.active_key_named("alice") is None
    assert state.key_by_hash("h1") == KeyRecord(first, "alice", "abcdefgh", 100.0, 200.0, 60, 2)
    state.add_key("alice", "qrstuvwx", "h3", 102.0, None, None)  # the name is free again
    assert [k.name for k in state.list_keys()] == ["alice", "bob", "alice"]


def test_usage_rows_come_back_filtered_ordered_and_bucketed(state: GatewayState) -> None:
    records = [
        UsageRecord(pipeline="llm", key_id=1, key_name="alice", units=10, price_wei="5", latency_ms=2.0, time=t)
        for t in (100.0, 110.0, 130.0)
    ] + [UsageRecord(pipeline="text-to-image", key_name="bob", status=503, latency_ms=4.0, time=125.0)]
    state.add_usage(records)
    assert len(state.usage_rows(["request_id"], None)) == 4
    newest = state.usage_rows(["time", "pipeline"], 105.0, newest_first=True, limit=2)
    assert newest == [(130.0, "llm"), (125.0, "text-to-image")]
    buckets = sorted(state.usage_buckets(100.0, 20.0))
    assert [tuple(b[:6]) for b in buckets] == [
        (0, "alice", "llm", 2, 20, 0),
        (1, "alice", "llm", 1, 10, 0),
        (1, "bob", "text-to-image", 1, 0, 1),
    ]
    assert buckets[0][6] == pytest.approx(10.0) and buckets[0][7] == pytest.approx(4.0)


def test_async_jobs_run_finish_expire_and_are_dropped(state: GatewayState) -> None:
    now = time.time()
    state.job_started("job-1", now + 60)
    running = state.job("job-1", now - 10)
    assert running is not None and running.result is None and running.running_until == pytest.approx(now + 60)
    state.job_finished("job-1", '{"images": []}')
    done = state.job("job-1", now - 10)
    assert done is not None and done.result == '{"images": []}' and done.running_until is None
    assert state.job("job-1", now + 30) is None  # older than the TTL asked for
    assert state.job("other", 0) is None
    state.drop_jobs(now + 30)
    assert state.job("job-1", 0) is None


def test_app_sessions_are_kept_found_ended_once_and_dropped_by_age(state: GatewayState) -> None:
    now = time.time()
    base = "http://127.0.0.1:1/apps/r1/session/s-1"
    held = AppSessionRecord("s-1", "echo/session", "https://o:8935", base + "/app", base, 7, "", now)
    state.session_reserved(held)
    state.session_reserved(AppSessionRecord("s-old", "echo/session", "https://o:8935", "u", "c", None, "m", now - 99))
    assert state.app_session("s-1") == held
    assert state.app_session("s-old") == AppSessionRecord(
        "s-old", "echo/session", "https://o:8935", "u", "c", None, "m", pytest.approx(now - 99)
    )
    assert state.app_session("nope") is None
    assert state.session_ended("s-1") is True
    assert state.session_ended("s-1") is False  # ended already (say, through another gateway)
    assert state.app_session("s-1") is None
    state.drop_sessions(now - 50)
    assert state.app_session("s-old") is None


def test_the_key_store_guard_and_usage_log_work_on_the_state(state: GatewayState) -> None:
    store = KeyStore(state)
    key, record = store.create("alice", rate_per_minute=3, max_concurrent=2)
    guard = KeyGuard(store, cache_seconds=0)
    held = [guard.admit(bearer(key)), guard.admit(bearer(key))]
    with pytest.raises(TooManyRequestsError, match="2 requests in progress"):
        guard.admit(bearer(key))
    for admission in held:
        admission.release()
    assert wait_for(lambda: guard.in_flight(record.id) == 0)
    guard.admit(bearer(key)).release()
    with pytest.raises(TooManyRequestsError, match="3 requests per") as refused:
        guard.admit(bearer(key))  # the burst of 3 is spent: one comes back every 20 s
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 20
    store.revoke("alice")
    with pytest.raises(UnauthorizedError, match="revoked"):
        guard.admit(bearer(key))
    guard.close()
    with UsageLog(state) as log:
        log.record(UsageRecord(pipeline="llm", key_id=record.id, key_name="alice", units=7))
        assert log.summary()[0] | {"latency_p50_ms": 0} == {
            "key": "alice", "requests": 1, "served": 1, "refused": 0, "failed": 0, "cancelled": 0, "errors": 0,
            "units": 7, "spend_wei": "", "latency_p50_ms": 0, "latency_mean_ms": 0.0,
        }  # fmt: skip
        assert [r.units for r in log.rows()] == [7]


def test_limits_refuse_without_spending_a_token_or_a_slot(state: GatewayState) -> None:
    record = KeyRecord(state.add_key("alice", "abcdefgh", "h1", 1.0, 2, 1), "alice", "abcdefgh", 1.0, None, 2, 1)
    limits = state.limits(time.monotonic)
    lease = limits.acquire(record)
    assert isinstance(lease, str)
    assert limits.acquire(record) == Refusal("concurrency", in_flight=1)
    limits.release(record, lease)
    assert wait_for(lambda: limits.in_flight(record.id) == 0)
    second = limits.acquire(record)  # the refused request above took no token: this is the second of 2
    assert isinstance(second, str)
    limits.release(record, second)
    assert wait_for(lambda: limits.in_flight(record.id) == 0)
    refused = limits.acquire(record)
    assert isinstance(refused, Refusal) and refused.over == "rate" and refused.retry_after == 30
    limits.close()


# What only PostgreSQL promises


@pytest.mark.processes
def test_two_gateways_on_one_database_share_one_limit(postgres: PostgresServer) -> None:
    url = postgres.database()
    one, two = PostgresState(url), PostgresState(url)
    try:
        key_id = one.add_key("alice", "abcdefgh", "h1", 1.0, 4, 2)
        record = KeyRecord(key_id, "alice", "abcdefgh", 1.0, None, 4, 2)
        a, b = one.limits(time.monotonic), two.limits(time.monotonic)
        first, second = a.acquire(record), b.acquire(record)
        assert isinstance(first, str) and isinstance(second, str)
        assert a.acquire(record) == Refusal("concurrency", in_flight=2)
        assert b.acquire(record) == Refusal("concurrency", in_flight=2)
        assert a.in_flight(key_id) == b.in_flight(key_id) == 2
        a.release(record, first)
        assert wait_for(lambda: b.in_flight(key_id) == 1)
        third = b.acquire(record)
        assert isinstance(third, str)
        b.release(record, second)
        b.release(record, third)
        assert wait_for(lambda: a.in_flight(key_id) == 0)
        fourth = a.acquire(record)  # the fourth token of 4, whichever gateway took the others
        assert isinstance(fourth, str)
        a.release(record, fourth)
        refused = b.acquire(record)
        assert isinstance(refused, Refusal) and refused.over == "rate" and refused.retry_after == 15
    finally:
        one.close()
        two.close()


@pytest.mark.processes
def test_a_dead_gateways_slots_free_up_when_their_lease_expires(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_postgres, "LEASE_SECONDS", 0.5)
    url = postgres.database()
    dead, alive = PostgresState(url), PostgresState(url)
    try:
        key_id = dead.add_key("alice", "abcdefgh", "h1", 1.0, None, 1)
        record = KeyRecord(key_id, "alice", "abcdefgh", 1.0, None, None, 1)
        dying = dead.limits(time.monotonic)
        # A gateway that died: its lease is never released nor renewed (and no renewing thread outlives the test).
        monkeypatch.setattr(dying, "_start_renewing", lambda: None)
        assert isinstance(dying.acquire(record), str)
        limits = alive.limits(time.monotonic)
        assert isinstance(limits.acquire(record), Refusal)
        assert wait_for(lambda: isinstance(limits.acquire(record), str), timeout=5)
    finally:
        alive.close()
        dead._pool.close()


@pytest.mark.processes
def test_gateways_starting_together_create_the_tables_once(postgres: PostgresServer) -> None:
    url = postgres.database()
    errors: list[BaseException] = []
    opened: list[PostgresState] = []

    def start() -> None:
        try:
            opened.append(PostgresState(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 6
    opened[0].add_key("alice", "abcdefgh", "h1", 1.0, None, None)
    assert [k.name for k in opened[5].list_keys()] == ["alice"]
    for state in opened:
        state.close()


@pytest.mark.processes
def test_an_unusable_database_is_one_line_without_the_password(postgres: PostgresServer) -> None:
    wrong = postgres.url(password="s3cret-wrong")
    with pytest.raises(ConfigError) as refused:
        PostgresState(wrong)
    message = str(refused.value)
    assert "s3cret-wrong" not in message and "lpnode:***@127.0.0.1" in message and "\n" not in message
    assert "password authentication failed" in message
    unreachable = f"postgresql://lpnode:{postgres.password}@127.0.0.1:1/postgres"
    with pytest.raises(ConfigError, match=r"cannot use the database postgresql://lpnode:\*\*\*@127\.0\.0\.1:1") as down:
        PostgresState(unreachable)
    assert postgres.password not in str(down.value) and "\n" not in str(down.value)


def test_urls_are_shown_with_the_password_masked() -> None:
    assert masked_url("postgresql://gw:hunter2@db:5432/lp") == "postgresql://gw:***@db:5432/lp"
    assert masked_url("postgresql://gw@db/lp") == "postgresql://gw@db/lp"
    assert masked_url("postgresql://db/lp?user=gw&password=hunter2") == "postgresql://db/lp?user=gw&password=***"
    assert masked_url("postgresql://gw:p@ss:w@rd@db/lp") == "postgresql://gw:***@db/lp"
    assert scrub("failed for hunter2 at db", "postgresql://gw:hunter2@db/lp") == "failed for *** at db"
    with pytest.raises(ConfigError, match=r"give a PostgreSQL URL") as wrong:
        check_db_url("mysql://gw:hunter2@db/lp")
    assert "hunter2" not in str(wrong.value)
    with pytest.raises(ConfigError, match="is not a URL") as bad_port:
        check_db_url("postgresql://gw:hunter2@db:port/lp")
    assert "hunter2" not in str(bad_port.value)
