"""Exit when the process that started us is gone, even if it was killed with SIGKILL.

An orchestrator starts runners as child processes; none may outlive it. The runner remembers its
parent's pid at start and checks it twice a second; once the parent is gone (the runner has been
re-parented), it sends itself SIGTERM, which shuts the server down gracefully.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from lpnode.logs import log_event

log = logging.getLogger("lpnode.runner")
POLL_SECONDS = 0.5


def exit_with_parent() -> threading.Thread:
    parent = os.getppid()

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(POLL_SECONDS):
            if os.getppid() != parent:
                log_event(log, "parent process gone; shutting down", logging.WARNING, parent_pid=parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="lpnode-parent-watch", daemon=True)
    thread.start()
    return thread
