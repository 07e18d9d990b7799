"""pytrickle (PyPI) in a virtualenv of its own, and a script that drives its trickle clients.

pytrickle 0.1.6 pins ``av<=14.4`` and needs torch, opencv and nvidia-ml-py for its media and model stack;
none of that is used by its trickle clients (``pytrickle.publisher``, ``pytrickle.subscriber``, ``pytrickle.base``
import only aiohttp), and torch from PyPI brings gigabytes of CUDA wheels. So the virtualenv holds pytrickle
without its dependencies plus aiohttp, and the script loads pytrickle's client modules without running the
package's ``__init__`` (which imports the media stack). The client code exercised is pytrickle's own, unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

PYTRICKLE_VERSION = "0.1.6"


def pytrickle_python() -> Path:
    """A venv with pytrickle's client, made once and reused (first run: ~15 s, needs PyPI)."""
    venv = Path(tempfile.gettempdir()) / f"lpnode-pytrickle-venv-{PYTRICKLE_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    with FileLock(f"{venv}.lock"):  # xdist workers: one installs, the others wait
        if not marker.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120
            )
            for packages in ([f"pytrickle=={PYTRICKLE_VERSION}", "--no-deps"], ["aiohttp>=3.8"]):
                install = subprocess.run(
                    [str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True, timeout=300
                )
                if install.returncode != 0:
                    pytest.skip(f"could not install pytrickle {PYTRICKLE_VERSION} from PyPI: {install.stderr[-500:]}")
            marker.touch()
    return python


PYTRICKLE_SCRIPT = r'''
"""Drive pytrickle's TricklePublisher / TrickleSubscriber against a trickle server; print results as JSON."""
import asyncio
import importlib.metadata
import importlib.util
import json
import sys
import types

import aiohttp

spec = importlib.util.find_spec("pytrickle")
package = types.ModuleType("pytrickle")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["pytrickle"] = package
from pytrickle.publisher import TricklePublisher  # noqa: E402
from pytrickle.subscriber import TrickleSubscriber  # noqa: E402

STEP = 15  # seconds any one step may take


async def read_all(segment):
    data = b""
    while True:
        chunk = await segment.read()
        if not chunk:
            return data
        data += chunk


async def wait_for_channel(url):
    """The server makes the channel on the first byte of the first POST: wait until it exists."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(url + "/next") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(url + " was never created")


async def main(url):
    out = {"version": importlib.metadata.version("pytrickle")}
    pub = TricklePublisher(url, "video/mp2t")
    await pub.start()
    # Streaming through: the subscriber gets the first bytes while the segment is still open.
    seg = await pub.next()
    await seg.write(b"zero-a")
    await wait_for_channel(url)
    sub = TrickleSubscriber(url)  # start_seq -2: the segment being written
    first = await asyncio.wait_for(sub.next(), STEP)
    out["first_seq"] = first.seq()
    out["first_chunk"] = (await asyncio.wait_for(first.read(), STEP)).decode()
    await seg.write(b"-b")
    await seg.close()
    out["first_rest"] = (await asyncio.wait_for(read_all(first), STEP)).decode()
    segments = []
    for i in (1, 2):
        seg = await pub.next()
        await seg.write(f"segment-{i}".encode())
        await seg.close()
        got = await asyncio.wait_for(sub.next(), STEP)
        segments.append([got.seq(), (await asyncio.wait_for(read_all(got), STEP)).decode()])
    out["segments"] = segments
    # 470: a subscriber asking for an evicted seq jumps to Lp-Trickle-Latest.
    for i in range(3, 8):
        seg = await pub.next()
        await seg.write(f"segment-{i}".encode())
        await seg.close()
        # pytrickle preconnects the next seq in a background task; a publisher that never yields to the
        # event loop between segments would POST the same seq again (media encoders always yield).
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    late = TrickleSubscriber(url, start_seq=0)
    waiting = asyncio.ensure_future(late.next())
    for i in range(8, 28):  # until the late subscriber, waiting at the live edge, gets a segment
        seg = await pub.next()
        await seg.write(f"segment-{i}".encode())
        await seg.close()
        await asyncio.wait({waiting}, timeout=1.0)
        if waiting.done():
            break
    jumped = await asyncio.wait_for(waiting, STEP)
    out["jumped"] = [jumped.seq(), (await asyncio.wait_for(read_all(jumped), STEP)).decode()]
    # The channel is deleted: a waiting subscriber ends (next() returns None).
    ending = asyncio.ensure_future(sub.next())
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as session:
        async with session.delete(url) as resp:
            out["delete_status"] = resp.status
    leftover = await asyncio.wait_for(ending, STEP)
    while leftover is not None:  # segments already published before the delete
        await read_all(leftover)
        leftover = await asyncio.wait_for(sub.next(), STEP)
    out["ended"] = True
    for client in (pub, sub, late):
        await client.close()
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
'''
