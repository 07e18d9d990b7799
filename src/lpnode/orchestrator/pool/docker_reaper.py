"""Removes one orchestrator run's runner containers once that orchestrator is gone, even when it was killed.

The Docker backend starts this file as a script, ``python -P docker_reaper.py LABEL``, in a session of its own,
with its standard input the read end of a pipe whose only writer is the orchestrator. End of file on that pipe
means the orchestrator closed its backend or died (SIGKILL included): the reaper then removes every container
labelled ``LABEL`` (``lpnode.run=<run id>``, one run's containers only, so a restarted orchestrator's new
runners are never touched) and exits. After a clean close the backend has removed them already and the reaper
finds none. It prints one line per container it removes, and imports only the Docker SDK: ``-P`` keeps this
directory (whose ``docker.py`` would shadow the SDK) off ``sys.path``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

SCRIPT = Path(__file__)


def command(label: str) -> list[str]:
    """The command line that runs the reaper for ``label`` with this interpreter."""
    return [sys.executable, "-P", str(SCRIPT), label]


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
    import docker  # type: ignore[import-untyped]  # after the wait: an idle reaper stays small

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
