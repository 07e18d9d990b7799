"""Whether this install can serve an aiModels.json: checked when an orchestrator or a remote worker starts, before
any runner does, so a missing pip extra is one clear line rather than every runner failing on its own.

- An entry without a ``url`` runs as a local runner process (``lpnode runner``) unless the runners are Docker
  containers: that needs the ``runner`` extra (the model stack).
- An image-to-video answer is encoded as MP4 here whatever runs the model: that needs PyAV and NumPy (the
  ``media`` extra; ``runner`` has them too).
"""

from __future__ import annotations

from collections.abc import Sequence

from lpnode.errors import MissingExtraError
from lpnode.extras import MEDIA, RUNNER, VIDEO_ENCODING, installed, missing_message
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.pipelines import PIPELINES, Results

_VIDEO_PIPELINES = frozenset(name for name, p in PIPELINES.items() if p.results is Results.VIDEO)


def check_install(entries: Sequence[AIModelConfig], *, process_runners: bool, docker_option: bool = True) -> None:
    """Return when this install can serve ``entries``; else raise :class:`MissingExtraError` naming the first
    entry that cannot be served, the extra it needs and what else would do. ``process_runners``: entries
    without a ``url`` run as local processes (not Docker containers); ``docker_option``: the command has
    ``--runner-backend docker`` to offer instead."""
    local = [entry for entry in entries if not entry.external] if process_runners else []
    if local and not installed(RUNNER):
        first = local[0]
        what = f'the local runner of {first.pipeline} "{first.model_id}"'
        instead = ", or use --runner-backend docker" if docker_option else ""
        raise MissingExtraError(f'{missing_message(RUNNER, what)} (or give the entry a "url"{instead})', RUNNER.name)
    video = [entry for entry in entries if entry.pipeline in _VIDEO_PIPELINES]
    if video and not installed(VIDEO_ENCODING):
        first = video[0]
        what = f'{first.pipeline} "{first.model_id}" (its frames are encoded as MP4 here)'
        raise MissingExtraError(missing_message(VIDEO_ENCODING, what), MEDIA.name)
