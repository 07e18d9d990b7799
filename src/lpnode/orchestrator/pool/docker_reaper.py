"""Removes one orchestrator run's runner containers once that orchestrator is gone, even when it was killed.

The Docker backend starts this file as a script, ``python -P docker_reaper.py LABEL``, in a session of its own,
with its standard input the read end of a pipe whose only writer is the orchestrator. End of file on that pipe
means the orchestrator closed its backend or died (SIGKILL included): the reaper then removes every container
labelled ``LABEL`` (``lpnode.run=<run id>``, one run's containers only, so a restarted orchestrator's new
runners are never touched) and exits. After a clean close the backend has removed them already and the reaper
finds none. It prints one line per container it removes, and imports only the standard library and the Docker
SDK: ``-P`` keeps this directory (whose ``docker.py`` would shadow the SDK) off ``sys.path``.
:class:`Reaper` is the backend's side: it starts the script and tells it to act.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__)
EXIT_SECONDS = 15.0  # for the reaper to finish after a close (it has nothing left to remove then)


def command(label: str) -> list[str]:
    """The command line that runs the reaper for ``label`` with this interpreter."""
    return [sys.executable, "-P", str(SCRIPT), label]


class Reaper:
    """A running reaper for one label. :meth:`close` tells it to act and waits for it (bounded)."""

    def __init__(self, process: asyncio.subprocess.Process, pipe: int) -> None:
        self._process = process
        self._pipe: int | None = pipe  # the write end; closing it (or this process dying) tells the reaper to act

    @classmethod
    async def start(cls, label: str, log_path: Path | None) -> Reaper:
        """Start the reaper for ``label``; its output is appended to ``log_path`` (discarded when None)."""
        read_end, write_end = os.pipe()  # not inherited by other children: only this process holds the write end
        out: Any = asyncio.subprocess.DEVNULL
        try:
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                out = open(log_path, "ab")  # noqa: ASYNC230, SIM115  # a local append, closed below
            process = await asyncio.create_subprocess_exec(
                *command(label),
                stdin=read_end,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C or a signal to this process group leaves it to do its job
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
            if out is not asyncio.subprocess.DEVNULL:
                out.close()
        return cls(process, write_end)

    async def close(self) -> None:
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            os.close(pipe)
        try:
            await asyncio.wait_for(self._process.wait(), EXIT_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or "=" not in argv[1]:
        print("usage: docker_reaper.py LABEL=VALUE (reads standard input until it closes)", file=sys.stderr)
        return 2
    label = argv[1]
    try:
        while sys.stdin.buffer.read(4096):  # nothing is ever written; this waits for end of file
            pass
    except KeyboardInterrupt:
        pass
    import docker  # after the wait: an idle reaper stays small

    try:
        client = docker.from_env()
        found = client.containers.list(all=True, filters={"label": label})
    except Exception as exc:  # no engine any more: nothing this process can remove
        print(f"lpnode docker reaper: cannot list containers labelled {label}: {exc}", file=sys.stderr)
        return 1
    for container in found:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            continue
        except Exception as exc:
            print(f"lpnode docker reaper: could not remove {container.name}: {exc}", file=sys.stderr)
            continue
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} lpnode docker reaper: removed {container.name} (its orchestrator is gone)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
