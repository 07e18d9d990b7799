"""``lpnode trickle serve|publish|subscribe``: a standalone trickle server, and the clients from a shell.

lpnode trickle serve --listen 127.0.0.1:8940
lpnode trickle publish http://127.0.0.1:8940/demo clip.ts
lpnode trickle subscribe http://127.0.0.1:8940/demo --output copy.ts
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from lpnode.errors import ConfigError
from lpnode.logs import configure_logging, log_event
from lpnode.trickle.channels import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_SWEEP_INTERVAL,
)
from lpnode.trickle.errors import ChannelNotFoundError
from lpnode.trickle.headers import DEFAULT_MIME_TYPE

if TYPE_CHECKING:  # the server and the clients are imported when a subcommand runs, not to read its flags
    from lpnode.protocol.asgi import Receive, Scope, Send
    from lpnode.trickle.server import TrickleServer
    from lpnode.trickle.session import TlsVerify

DEFAULT_LISTEN = "127.0.0.1:8940"
WRITE_CHUNK = 64 * 1024


def add_trickle_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("trickle", help="a trickle server, publisher and subscriber (Livepeer's live video transport)")
    tsub = p.add_subparsers(dest="trickle_command", required=True, metavar="{serve,publish,subscribe}")

    serve = tsub.add_parser("serve", help="run a standalone trickle server")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to listen on (default {DEFAULT_LISTEN})")
    serve.add_argument("--base-path", default="/", help="path the channels live under, e.g. /ai/trickle/ (default /)")
    serve.add_argument(
        "--no-autocreate",
        dest="autocreate",
        action="store_false",
        help="do not create channels on first publish or on POST /CHANNEL (go-livepeer's default)",
    )
    serve.add_argument("--create-secret", default="", help="let POST /CHANNEL with 'Authorization: SECRET' create")
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help=f"delete channels with no new segment for this many seconds (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    serve.add_argument(
        "--sweep-interval",
        type=float,
        default=DEFAULT_SWEEP_INTERVAL,
        help=f"seconds between idle checks (default {DEFAULT_SWEEP_INTERVAL:g})",
    )
    serve.add_argument(
        "--max-segment-bytes",
        type=int,
        default=DEFAULT_MAX_SEGMENT_BYTES,
        help=f"cut off segments larger than this (default {DEFAULT_MAX_SEGMENT_BYTES})",
    )
    serve.add_argument("--max-channels", type=int, default=DEFAULT_MAX_CHANNELS, help=f"default {DEFAULT_MAX_CHANNELS}")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    tls_help = "trust this CA/certificate file (default: accept any certificate, as Livepeer's clients do)"
    pub = tsub.add_parser("publish", help="publish a file (or - for stdin) to a channel")
    pub.add_argument("url", help="channel URL, e.g. http://127.0.0.1:8940/demo")
    pub.add_argument("file", help="file to publish, or - for standard input")
    pub.add_argument("--mime-type", default=DEFAULT_MIME_TYPE, help=f"Content-Type (default {DEFAULT_MIME_TYPE})")
    pub.add_argument("--segment-bytes", type=int, default=1024 * 1024, help="bytes per segment (default 1 MiB)")
    pub.add_argument("--lines", action="store_true", help="one segment per line (e.g. JSON messages)")
    pub.add_argument("--create", action="store_true", help="create the channel first (POST URL)")
    pub.add_argument("--secret", default="", help="Authorization value for --create")
    pub.add_argument("--start-seq", type=int, default=0, help="first seq; -1 asks the server (default 0)")
    pub.add_argument("--keep", action="store_true", help="leave the channel open at the end (no DELETE URL)")
    pub.add_argument("--cacert", type=Path, help=tls_help)

    subp = tsub.add_parser("subscribe", help="read a channel's segments to a file or standard output")
    subp.add_argument("url", help="channel URL, e.g. http://127.0.0.1:8940/demo")
    subp.add_argument("--output", "-o", default="-", help="file to write, or - for standard output (default)")
    subp.add_argument(
        "--start-seq", type=int, default=-2, help="first seq; -1 the next one, -2 the current one (default -2)"
    )
    subp.add_argument("--max-segments", type=int, default=0, help="stop after this many segments (default: no limit)")
    subp.add_argument("--lines", action="store_true", help="end each segment with a newline (e.g. JSON messages)")
    subp.add_argument("--cacert", type=Path, help=tls_help)


def run_trickle(args: argparse.Namespace) -> int:
    if args.trickle_command == "serve":
        from lpnode.protocol.same_port import new_event_loop
        from lpnode.serving import run_until_stopped
        from lpnode.trickle.server import TrickleServer, TrickleSettings

        configure_logging(args.log_level)
        settings = TrickleSettings(
            autocreate=args.autocreate,
            create_secret=args.create_secret,
            idle_timeout=args.idle_timeout,
            sweep_interval=args.sweep_interval,
            max_segment_bytes=args.max_segment_bytes,
            max_channels=args.max_channels,
        )
        _check_positive(args)
        host, port = _listen_address(args.listen)

        async def main(stop: asyncio.Event) -> None:
            await serve_trickle(TrickleServer(settings), host, port, args.base_path, stop)

        run_until_stopped(main, loop_factory=new_event_loop)
        return 0
    configure_logging("warning")
    verify = _tls(args.cacert)
    if args.trickle_command == "publish":
        return asyncio.run(_publish(args, verify))
    return asyncio.run(_subscribe(args, verify))


async def serve_trickle(server: TrickleServer, host: str, port: int, base_path: str, stop: asyncio.Event) -> None:
    """Serve ``server`` under ``base_path`` (HTTP/1.1 and h2c) until ``stop`` is set."""
    from hypercorn.asyncio import serve

    from lpnode.protocol.same_port import ServerSettings, hypercorn_config
    from lpnode.serving import port_is_free
    from lpnode.trickle.server import log

    config = hypercorn_config(ServerSettings(host, port))
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    if not port_is_free(host, port):
        raise ConfigError(f"cannot listen on {host}:{port}: the port is in use; choose another --listen")
    log_event(log, "trickle server listening", address=f"http://{host}:{port}{base}/")

    async def stopping() -> None:
        await stop.wait()
        server.channels.close_all()  # waiting readers and publishers are answered now, not at the grace timeout

    try:
        await serve(cast(Any, _Prefixed(server, base)), config, shutdown_trigger=stopping, mode="asgi")
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "choose another --listen or stop the process using it"
        ) from exc
    finally:
        await server.close()


class _Prefixed:
    """``app`` under ``prefix`` (404 elsewhere); lifespan passes through."""

    def __init__(self, app: TrickleServer, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.prefix:
            path: str = scope["path"]
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                body = b"404 page not found\n"
                await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"19")]})
                await send({"type": "http.response.body", "body": body})
                return
            scope = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
        await self.app(scope, receive, send)


async def _publish(args: argparse.Namespace, verify: TlsVerify) -> int:
    from lpnode.trickle.publisher import TricklePublisher

    source: BinaryIO = sys.stdin.buffer if args.file == "-" else _open(args.file)
    headers = {"Authorization": args.secret} if args.secret else {}
    segments = total = 0
    try:
        async with TricklePublisher(
            args.url, args.mime_type, start_seq=args.start_seq, verify_tls=verify, delete_on_close=not args.keep
        ) as pub:
            if args.create:
                pub.headers.update(headers)
                await pub.create()
            while True:
                if args.lines:
                    data = await asyncio.to_thread(source.readline)
                    if not data:
                        break
                    if not data.strip():
                        continue
                    await pub.write(data.rstrip(b"\r\n"))
                    total += len(data.rstrip(b"\r\n"))
                else:
                    data = await asyncio.to_thread(source.read, args.segment_bytes)
                    if not data:
                        break
                    async with pub.segment() as seg:
                        for start in range(0, len(data), WRITE_CHUNK):
                            await seg.write(data[start : start + WRITE_CHUNK])
                    total += len(data)
                segments += 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    print(f"published {segments} segments ({total} bytes) to {args.url}", file=sys.stderr)
    return 0


async def _subscribe(args: argparse.Namespace, verify: TlsVerify) -> int:
    from lpnode.trickle.subscriber import TrickleSubscriber

    sink: BinaryIO = sys.stdout.buffer if args.output == "-" else _open(args.output, "wb")
    segments = total = 0
    try:
        async with TrickleSubscriber(args.url, args.start_seq, verify_tls=verify) as sub:
            async for segment in sub:
                async for chunk in segment:
                    sink.write(chunk)
                    total += len(chunk)
                if args.lines:
                    sink.write(b"\n")
                sink.flush()
                segments += 1
                if args.max_segments and segments >= args.max_segments:
                    break
            end = sub.end
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    if end == "not found" and segments == 0:
        raise ChannelNotFoundError(f"{args.url}: no such channel on the server")
    reason = {"closed": "; the channel was closed", "not found": "; the channel is gone"}.get(end or "", "")
    print(f"received {segments} segments ({total} bytes){reason}", file=sys.stderr)
    return 0


def _open(path: str, mode: str = "rb") -> BinaryIO:
    try:
        return cast(BinaryIO, open(path, mode))
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror or exc}") from None


def _tls(cacert: Path | None) -> TlsVerify:
    if cacert is None:
        return False
    try:
        return ssl.create_default_context(cafile=str(cacert))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--cacert {cacert}: cannot load it: {exc}") from None


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {text}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _check_positive(args: argparse.Namespace) -> None:
    if args.idle_timeout <= 0 or args.sweep_interval <= 0 or args.max_segment_bytes <= 0 or args.max_channels <= 0:
        raise ConfigError(
            "--idle-timeout, --sweep-interval, --max-segment-bytes and --max-channels must all be positive"
        )
