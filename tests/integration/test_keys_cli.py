"""The ``keys`` and ``usage`` commands, run as real processes on a data dir, as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpnode.errors import UnauthorizedError
from lpnode.gateway.key_guard import KeyGuard
from lpnode.gateway.keys import KeyStore
from lpnode.gateway.usage import UsageLog, UsageRecord
from procs import child_env

COMMAND = [sys.executable, "-m", "lpnode.cli"]


def lpnode(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env(HOME=str(home)) if home else child_env()
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env, timeout=60)


def ok(*args: str, home: Path | None = None) -> str:
    result = lpnode(*args, home=home)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(*args: str) -> str:
    """The one error line of a command an operator got wrong (exit status 2, no traceback)."""
    result = lpnode(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpnode: error: "), result.stderr
    return lines[0]


def test_create_list_and_revoke_a_key(tmp_path: Path) -> None:
    data = str(tmp_path)
    out = ok("keys", "create", "alice", "--rate-per-minute", "60", "--max-concurrent", "2", "--data-dir", data)
    key = next(word for word in out.split() if word.startswith("lpk_"))
    assert len(key) == 36
    assert "cannot be shown again" in out
    assert "60 requests/minute, 2 at once" in out

    listing = ok("keys", "list", "--data-dir", data)
    header, row = listing.strip().splitlines()
    assert header.split() == ["ID", "NAME", "KEY", "CREATED", "RATE/MIN", "AT", "ONCE", "STATUS"]
    assert row.split()[1:3] == ["alice", key[:12] + "…"] and row.endswith("active")
    assert key not in listing

    # The gateway accepts the key the command printed...
    store = KeyStore(tmp_path / "gateway.sqlite")
    assert KeyGuard(store).admit(f"Bearer {key}").key.name == "alice"

    out = ok("keys", "revoke", "alice", "--data-dir", data)
    assert "revoked API key 'alice'" in out and "within 5 s" in out
    assert "revoked 20" in ok("keys", "list", "--data-dir", data)
    # ...and refuses it once revoked.
    with pytest.raises(UnauthorizedError, match="revoked"):
        KeyGuard(store).admit(f"Bearer {key}")


def test_list_and_create_as_json(tmp_path: Path) -> None:
    data = str(tmp_path)
    assert json.loads(ok("keys", "list", "--json", "--data-dir", data)) == []
    created = json.loads(ok("keys", "create", "ci-bot", "--json", "--data-dir", data))
    assert created["key"].startswith("lpk_") and created["name"] == "ci-bot" and created["active"]
    [listed] = json.loads(ok("keys", "list", "--json", "--data-dir", data))
    assert "key" not in listed
    assert listed == {k: v for k, v in created.items() if k != "key"}


def test_mistakes_are_one_clear_line(tmp_path: Path) -> None:
    data = str(tmp_path)
    ok("keys", "create", "alice", "--data-dir", data)
    assert "an active key named 'alice' already exists" in refused("keys", "create", "alice", "--data-dir", data)
    assert "no active key named 'bob'" in refused("keys", "revoke", "bob", "--data-dir", data)
    assert "must be 1 or more" in refused("keys", "create", "bob", "--max-concurrent", "0", "--data-dir", data)
    assert "--since 'yesterday'" in refused("usage", "--since", "yesterday", "--data-dir", data)
    assert "'orchestrator' is not one of" in refused("usage", "--by", "orchestrator", "--data-dir", data)
    empty = tmp_path / "empty"
    assert "no API keys in" in refused("keys", "revoke", "alice", "--data-dir", str(empty))


def test_nothing_is_created_by_only_looking(tmp_path: Path) -> None:
    data = tmp_path / "none"
    assert "no API keys in" in ok("keys", "list", "--data-dir", str(data))
    assert "no usage recorded" in ok("usage", "--data-dir", str(data))
    assert not data.exists()


def test_the_database_lives_in_the_gateways_data_dir_by_default(tmp_path: Path) -> None:
    ok("keys", "create", "alice", home=tmp_path)
    assert (tmp_path / ".lpnode" / "gateway" / "gateway.sqlite").is_file()
    assert "alice" in ok("keys", "list", home=tmp_path)


def test_usage_sums_by_key_pipeline_and_model(tmp_path: Path) -> None:
    now = time.time()
    with UsageLog(tmp_path / "gateway.sqlite") as log:
        for i in range(4):
            log.record(
                UsageRecord(
                    key_id=1,
                    key_name="alice",
                    pipeline="text-to-image",
                    model_id="stabilityai/sd-turbo",
                    units=262144,
                    price_wei="524288",
                    orchestrator="https://127.0.0.1:8935",
                    latency_ms=100.0 + i,
                    status=200 if i else 503,
                    request_id=f"r{i}",
                    time=now - 60,
                )
            )
        log.record(UsageRecord(key_id=2, key_name="bob", pipeline="llm", model_id="m", units=30, time=now - 7200))
    data = str(tmp_path)

    groups = json.loads(ok("usage", "--json", "--data-dir", data))
    assert [(g["key"], g["requests"], g["served"], g["failed"]) for g in groups] == [
        ("alice", 4, 3, 1),
        ("bob", 1, 1, 0),
    ]
    # the 503 is counted apart: neither its units nor its price are in the totals
    assert groups[0]["spend_wei"] == str(3 * 524288) and groups[0]["units"] == 3 * 262144

    recent = json.loads(ok("usage", "--since", "1h", "--by", "key,pipeline,model", "--json", "--data-dir", data))
    assert [(g["key"], g["pipeline"], g["model"]) for g in recent] == [
        ("alice", "text-to-image", "stabilityai/sd-turbo")
    ]

    table = ok("usage", "--by", "pipeline", "--data-dir", data).strip().splitlines()
    assert table[0].split()[:6] == ["PIPELINE", "REQUESTS", "SERVED", "REFUSED", "FAILED", "CANCELLED"]
    assert table[1].split()[:6] == ["text-to-image", "4", "3", "0", "1", "0"]
    assert table[2].split()[:3] == ["llm", "1", "1"]
    assert table[3].split()[:6] == ["TOTAL", "5", "4", "0", "1", "0"]

    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
    assert "text-to-image" in ok("usage", "--since", iso, "--by", "pipeline", "--data-dir", data)
    assert "no usage recorded since" in ok("usage", "--since", "30s", "--data-dir", data)
