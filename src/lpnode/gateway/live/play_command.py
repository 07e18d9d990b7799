"""The ``lpnode live`` command's flags and checks; the player itself is :mod:`lpnode.gateway.live.play`, loaded when
it runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

from lpnode.errors import ConfigError
from lpnode.extras import MEDIA, require

DEFAULT_GATEWAY = "http://127.0.0.1:8935"


def add_live_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("live", help="live video-to-video through a gateway (play a file)")
    lsub = p.add_subparsers(dest="live_command", required=True, metavar="{play}")
    play = lsub.add_parser(
        "play",
        help="stream a video file through a live pipeline and save the output",
        description="Stream FILE in real time through a gateway's live pipeline and write the processed output.",
    )
    play.add_argument("file", type=Path, help="a video file PyAV can read (mp4, mkv, ts, ...)")
    play.add_argument("--pipeline", required=True, help="the live pipeline (model_id), e.g. noop")
    play.add_argument("--params", default="", help='pipeline params as JSON, e.g. \'{"prompt": "a cat"}\'')
    play.add_argument("--gateway", default=DEFAULT_GATEWAY, help=f"the gateway's URL (default {DEFAULT_GATEWAY})")
    play.add_argument("--output", type=Path, help="where to write the output: .ts or .mp4 (default FILE-live.ts)")
    play.add_argument("--seconds", type=float, default=0.0, help="send at most this many seconds of the file")
    play.add_argument("--stream", default="", help="the stream name (default play-<random>)")
    play.add_argument("--segment-seconds", type=float, default=1.0, help="input segment length in seconds (default 1)")


def run_live(args: argparse.Namespace) -> int:
    if args.live_command != "play":
        raise ConfigError(f"unknown live command {args.live_command!r}")
    require(MEDIA, "lpnode live play")  # it encodes and decodes video (PyAV)
    if not args.file.is_file():
        raise ConfigError(f"{args.file}: no such file")
    params: Any = {}
    if args.params:
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise ConfigError(f"--params must be a JSON object: {exc}") from None
        if not isinstance(params, dict):
            raise ConfigError("--params must be a JSON object")
    if args.seconds < 0 or args.segment_seconds <= 0:
        raise ConfigError("--seconds must be 0 (the whole file) or more, --segment-seconds positive")
    output: Path = args.output or Path(f"{args.file.stem}-live.ts")
    if output.suffix.lower() not in (".ts", ".mp4"):
        raise ConfigError(f"--output {output}: use a .ts or .mp4 file name")
    stream = args.stream or f"play-{secrets.token_hex(3)}"
    from lpnode.gateway.live.play import Player

    player = Player(args.file, args.pipeline, params, args.gateway.rstrip("/"), output, stream, args)
    try:
        return asyncio.run(player.run())
    except KeyboardInterrupt:
        return 130
