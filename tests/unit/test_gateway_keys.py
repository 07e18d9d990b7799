"""Gateway API keys and usage records: hashed storage, revocation, 401/429 admission, usage sums."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from lpnode.errors import ConfigError, TooManyRequestsError, UnauthorizedError
from lpnode.gateway.key_guard import KeyGuard, bearer_key
from lpnode.gateway.keys import KeyStore
from lpnode.gateway.keys_command import DEFAULT_DATA_DIR
from lpnode.gateway.settings import GatewaySettings
from lpnode.gateway.usage import UsageLog, UsageRecord, fee_wei


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "gateway.sqlite")


def bearer(key: str) -> str:
    return f"Bearer {key}"


def test_a_created_key_is_found_by_its_plaintext_and_listed_by_prefix(store: KeyStore) -> None:
    key, record = store.create("alice", rate_per_minute=60, max_concurrent=2)
    assert key.startswith("lpk_") and len(key) == 36
    assert record.prefix == key[4:12] and record.active
    assert (record.rate_per_minute, record.max_concurrent) == (60, 2)
    assert store.lookup(key) == record
    assert store.list() == [record]
    assert store.lookup(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.lookup("not a key") is None


def test_the_plaintext_key_is_never_written_to_disk(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite"
    keys = [KeyStore(path).create(f"user{i}")[0] for i in range(3)]
    with closing(sqlite3.connect(path)) as conn:
        hashes = {row[0] for row in conn.execute("SELECT key_hash FROM api_keys")}
    assert len(hashes) == 3 and all(len(h) == 64 for h in hashes)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("gateway.sqlite")]
    data = b"".join(p.read_bytes() for p in files)
    for key in keys:
        assert key.encode() not in data
        assert key[4:].encode() not in data  # nor the secret part alone
    assert path.stat().st_mode & 0o077 == 0  # owner only


def test_the_keys_command_and_the_gateway_default_to_the_same_data_dir() -> None:
    assert GatewaySettings(orchestrators=[]).data_dir == DEFAULT_DATA_DIR


def test_names_are_unique_among_active_keys_and_free_again_after_revoking(store: KeyStore) -> None:
    _, first = store.create("alice")
    with pytest.raises(ConfigError, match="an active key named 'alice' already exists"):
        store.create("alice")
    revoked = store.revoke("alice")
    assert revoked.id == first.id and revoked.revoked_at is not None and not revoked.active
    _, second = store.create("alice")
    assert second.id != first.id
    assert [(r.name, r.active) for r in store.list()] == [("alice", False), ("alice", True)]


def test_revoke_by_id_and_clear_errors_for_unknown_or_repeated(store: KeyStore) -> None:
    _, record = store.create("bob")
    assert store.revoke(str(record.id)).id == record.id
    with pytest.raises(ConfigError, match=rf"key {record.id} \(bob\) was already revoked"):
        store.revoke(record.id)
    with pytest.raises(ConfigError, match="no active key named 'carol'; 'lpnode keys list' shows the keys"):
        store.revoke("carol")
    with pytest.raises(ConfigError, match="no key with id 99"):
        store.revoke("99")


@pytest.mark.parametrize("name", ["", "42", "has space", "-dash-first", "x" * 65])
def test_unusable_names_are_refused(store: KeyStore, name: str) -> None:
    with pytest.raises(ConfigError, match="key name"):
        store.create(name)


def test_limits_must_be_positive(store: KeyStore) -> None:
    with pytest.raises(ConfigError, match="rate per minute must be 1 or more"):
        store.create("alice", rate_per_minute=0)
    with pytest.raises(ConfigError, match="max concurrent must be 1 or more"):
        store.create("alice", max_concurrent=-1)


def test_a_database_that_is_not_sqlite_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite"
    path.write_text("not a database " * 100)
    with pytest.raises(ConfigError, match=r"cannot use .* as the gateway database"):
        KeyStore(path)


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (None, "missing API key"),
        ("", "missing API key"),
        ("Basic dXNlcjpwYXNz", "malformed Authorization header"),
        ("Bearer", "malformed Authorization header"),
        ("Bearer lpk_short", "malformed Authorization header"),
        ("Bearer lpk_" + "A" * 32, "unknown API key"),
    ],
)
def test_requests_without_a_valid_key_get_401_saying_how_to_send_one(
    store: KeyStore, header: str | None, says: str
) -> None:
    with pytest.raises(UnauthorizedError) as refused:
        KeyGuard(store).admit(header)
    assert refused.value.status_code == 401
    assert says in refused.value.message
    assert "Authorization: Bearer <key>" in refused.value.message
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_bearer_scheme_is_case_insensitive_and_spaces_are_trimmed(store: KeyStore) -> None:
    key, record = store.create("alice")
    assert bearer_key(f"  bearer   {key} ") == key
    assert KeyGuard(store).admit(f"BEARER {key}").key == record


def test_a_revoked_key_is_refused_once_the_cache_expires(store: KeyStore) -> None:
    clock = FakeClock()
    guard = KeyGuard(store, clock=clock, cache_seconds=5)
    key, _ = store.create("alice")
    guard.admit(bearer(key)).release()
    store.revoke("alice")
    clock.now += 4.9
    guard.admit(bearer(key)).release()  # still cached
    clock.now += 0.2
    with pytest.raises(UnauthorizedError, match="this API key was revoked"):
        guard.admit(bearer(key))


def test_the_rate_limit_is_a_token_bucket_with_retry_after(store: KeyStore) -> None:
    clock = FakeClock()
    guard = KeyGuard(store, clock=clock)
    key, _ = store.create("alice", rate_per_minute=6)  # burst 6, then one every 10 s
    for _ in range(6):
        guard.admit(bearer(key)).release()
    with pytest.raises(TooManyRequestsError) as refused:
        guard.admit(bearer(key))
    assert refused.value.status_code == 429
    assert refused.value.retry_after == 10
    assert refused.value.headers == {"Retry-After": "10"}
    assert "6 requests per minute" in refused.value.message
    clock.now += 4
    with pytest.raises(TooManyRequestsError) as again:
        guard.admit(bearer(key))
    assert again.value.retry_after == 6
    clock.now += 6
    guard.admit(bearer(key)).release()  # one refilled
    with pytest.raises(TooManyRequestsError):
        guard.admit(bearer(key))
    clock.now += 3600  # refills only up to the burst size
    for _ in range(6):
        guard.admit(bearer(key)).release()
    with pytest.raises(TooManyRequestsError):
        guard.admit(bearer(key))


def test_limits_are_counted_per_key(store: KeyStore) -> None:
    guard = KeyGuard(store, clock=FakeClock())
    slow, _ = store.create("slow", rate_per_minute=1)
    free, _ = store.create("free")
    guard.admit(bearer(slow)).release()
    with pytest.raises(TooManyRequestsError) as refused:
        guard.admit(bearer(slow))
    assert refused.value.retry_after == 60
    for _ in range(100):
        guard.admit(bearer(free)).release()


def test_concurrency_limit_gives_429_and_release_frees_a_slot_exactly_once(store: KeyStore) -> None:
    guard = KeyGuard(store, clock=FakeClock())
    key, record = store.create("alice", max_concurrent=2)
    first = guard.admit(bearer(key))
    second = guard.admit(bearer(key))
    with pytest.raises(TooManyRequestsError) as refused:
        guard.admit(bearer(key))
    assert refused.value.retry_after == 1 and "2 requests in progress" in refused.value.message
    first.release()
    first.release()  # a second release must not free another slot
    assert guard.in_flight(record.id) == 1
    third = guard.admit(bearer(key))
    with pytest.raises(TooManyRequestsError):
        guard.admit(bearer(key))
    second.release()
    third.release()
    assert guard.in_flight(record.id) == 0


def test_a_refused_request_takes_no_slot_and_no_token(store: KeyStore) -> None:
    guard = KeyGuard(store, clock=FakeClock())
    key, record = store.create("alice", rate_per_minute=2, max_concurrent=1)
    held = guard.admit(bearer(key))
    with pytest.raises(TooManyRequestsError):
        guard.admit(bearer(key))  # over concurrency: must not spend the second token
    held.release()
    guard.admit(bearer(key)).release()
    assert guard.in_flight(record.id) == 0


def test_admissions_work_as_context_managers_and_from_async_code(store: KeyStore) -> None:
    guard = KeyGuard(store, clock=FakeClock())
    key, record = store.create("alice", max_concurrent=1)
    with guard.admit(bearer(key)) as admitted:
        assert admitted.key == record and guard.in_flight(record.id) == 1
    assert guard.in_flight(record.id) == 0

    async def scenario() -> None:
        async with await guard.admit_async(bearer(key)):
            assert guard.in_flight(record.id) == 1
            with pytest.raises(TooManyRequestsError):
                await guard.admit_async(bearer(key))
        with pytest.raises(UnauthorizedError):
            await guard.admit_async("Bearer lpk_" + "b" * 32)

    asyncio.run(scenario())
    assert guard.in_flight(record.id) == 0


def test_the_guard_is_safe_from_many_threads(store: KeyStore) -> None:
    guard = KeyGuard(store)
    key, record = store.create("alice", max_concurrent=3)
    admitted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(50):
            try:
                ticket = guard.admit(bearer(key))
            except TooManyRequestsError:
                refused.append(1)
                continue
            assert guard.in_flight(record.id) <= 3
            admitted.append(1)
            ticket.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) + len(refused) == 400 and admitted
    assert guard.in_flight(record.id) == 0


# Usage records


def usage(**fields: object) -> UsageRecord:
    base: dict[str, object] = {"pipeline": "text-to-image", "model_id": "m", "key_id": 1, "key_name": "alice"}
    return UsageRecord(**(base | fields))  # type: ignore[arg-type]


def test_records_are_all_written_by_close(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite"
    log = UsageLog(path, batch_size=7)
    for i in range(250):
        log.record(usage(request_id=f"r{i}", time=float(i)))
    log.close()
    log.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM usage").fetchone() == (250,)
    with UsageLog(path) as reopened:
        latest = reopened.rows(limit=2)
        assert [r.request_id for r in latest] == ["r249", "r248"]
        assert latest[0] == usage(request_id="r249", time=249.0)
        assert len(reopened.rows(limit=1000, since=200.0)) == 50
        reopened.record(usage(request_id="late"))
    assert reopened.dropped == 0


def test_a_record_after_close_is_still_written(tmp_path: Path) -> None:
    log = UsageLog(tmp_path / "gateway.sqlite")
    log.close()
    log.record(usage(request_id="after"))
    with UsageLog(tmp_path / "gateway.sqlite") as again:
        assert [r.request_id for r in again.rows()] == ["after"]


def test_keys_and_usage_share_one_database_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite"
    store = KeyStore(path)
    with UsageLog(path) as log:
        _, record = store.create("alice")
        log.record(usage(key_id=record.id))
        assert log.summary()[0]["requests"] == 1
    assert store.list() == [record]


def test_summary_groups_counts_outcomes_served_units_spend_and_latency(tmp_path: Path) -> None:
    with UsageLog(tmp_path / "gateway.sqlite") as log:
        log.record(usage(units=100, price_wei="1000", latency_ms=10.0, time=100.0))
        log.record(usage(units=100, price_wei="1000.5", latency_ms=30.0, status=500, time=200.0))
        log.record(usage(units=50, price_wei="", latency_ms=20.0, pipeline="llm", time=300.0))
        log.record(usage(key_id=2, key_name="bob", units=7, latency_ms=5.0, model_id="other", time=400.0))
        by_key = log.summary()
        assert [row["key"] for row in by_key] == ["alice", "bob"]
        alice = by_key[0]
        assert alice == {
            "key": "alice",
            "requests": 3,
            "served": 2,
            "refused": 0,
            "failed": 1,
            "cancelled": 0,
            "errors": 1,
            "units": 150,  # the failed request's 100 units are not counted
            "spend_wei": "1000",
            "latency_p50_ms": 20.0,
            "latency_mean_ms": 20.0,
        }
        assert by_key[1]["spend_wei"] == ""  # nothing priced
        by_two = log.summary(group_by=["pipeline", "model"])
        assert [(r["pipeline"], r["model"], r["requests"]) for r in by_two] == [
            ("text-to-image", "m", 2),
            ("llm", "m", 1),
            ("text-to-image", "other", 1),
        ]
        total = log.summary(group_by=[], since=250.0)
        assert total == [
            {
                "requests": 2,
                "served": 2,
                "refused": 0,
                "failed": 0,
                "cancelled": 0,
                "errors": 0,
                "units": 57,
                "spend_wei": "",
                "latency_p50_ms": 12.5,
                "latency_mean_ms": 12.5,
            }
        ]
        assert log.summary(since=1000.0) == []
        with pytest.raises(ConfigError, match="cannot group usage by 'orchestrator'"):
            log.summary(group_by=["orchestrator"])


def test_fee_is_units_times_price_as_a_decimal_string() -> None:
    assert fee_wei(1024, 3) == "3072"
    assert fee_wei(3, "0.5") == "1.5"
    assert fee_wei(10**6, 10**18) == "1" + "0" * 24
    assert fee_wei(5, None) == ""
    assert fee_wei(262144, Fraction(1, 4)) == "65536"  # the gateway's prices are Fractions
    assert fee_wei(1, Fraction(1, 3)) == "0." + "3" * 30
    assert fee_wei(2, Decimal("0.75")) == "1.5"
