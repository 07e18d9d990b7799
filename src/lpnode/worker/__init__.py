"""``lpnode worker``: a remote AI worker that attaches to an orchestrator and serves its jobs on local
runners (go-livepeer's ``-aiWorker`` with ``-orchAddr``; see ``docs/workers.md``)."""

from lpnode.worker.settings import WorkerSettings, orchestrator_url

__all__ = ["WorkerSettings", "orchestrator_url"]
