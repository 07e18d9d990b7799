"""The ``lpnode dashboard``, ``lpnode status`` and ``lpnode doctor`` commands (parsers and handlers).

``lpnode doctor`` needs the roles' own checks; ``lpnode.cli`` passes them in (see
:mod:`lpnode.dashboard.sources`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpnode.dashboard.sources import Advertisement, GatewayWallet, NodeFiles
from lpnode.dashboard.status_command import DEFAULT_GATEWAY, DEFAULT_ORCHESTRATOR
from lpnode.protocol.admin_access import ADMIN_TOKEN_ENV, read_admin_token

UP_DATA_DIR = Path("~/.lpnode")
ADMIN_TOKEN_HELP = f"the admin API's token, or a file holding it, if it asks for one [{ADMIN_TOKEN_ENV}]"


def add_dashboard_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboard",
        help="serve the network page for any gateway's /getNetworkCapabilities",
        description="Fetch a gateway's /getNetworkCapabilities (lpnode's or go-livepeer's CLI port) periodically "
        "and serve the network page from this machine.",
    )
    p.add_argument("--from", dest="source", required=True, metavar="URL", help="e.g. http://127.0.0.1:5935")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    p.add_argument("--interval", type=float, default=10.0, metavar="SECONDS", help="fetch period (default 10)")
    p.add_argument("--admin-token", default="", metavar="TOKEN", help=ADMIN_TOKEN_HELP)

    s = sub.add_parser("status", help="the network, the node and its runners as tables")
    s.add_argument("--gateway", metavar="URL", help=f"the gateway (default {DEFAULT_GATEWAY})")
    s.add_argument(
        "--orchestrator",
        metavar="URL",
        help=f"the orchestrator (default {DEFAULT_ORCHESTRATOR}; its admin API, e.g. http://127.0.0.1:7935, "
        "adds runner PIDs)",
    )
    s.add_argument("--admin-token", default="", metavar="TOKEN", help=ADMIN_TOKEN_HELP)

    d = sub.add_parser(
        "doctor",
        help="check the whole loop: models, runners, advertisement, prices, a request (and payments on chain)",
        allow_abbrev=False,
    )
    d.add_argument(
        "--orchestrator", default=DEFAULT_ORCHESTRATOR, metavar="URL", help=f"default {DEFAULT_ORCHESTRATOR}"
    )
    d.add_argument(
        "--gateway", default=DEFAULT_GATEWAY, metavar="URL", help=f"the gateway's API (default {DEFAULT_GATEWAY})"
    )
    d.add_argument(
        "--ai-models", type=Path, metavar="FILE", help="the aiModels.json (default ~/.lpnode/aiModels.json if any)"
    )
    d.add_argument("--models-dir", type=Path, metavar="DIR", help="the models dir (default ~/.lpnode/models if any)")
    d.add_argument(
        "--data-dir", type=Path, default=UP_DATA_DIR, metavar="DIR",
        help="`lpnode up`'s data dir: the defaults above and its dev chain's gateway wallet (default ~/.lpnode)",
    )  # fmt: skip
    w = d.add_argument_group("on chain: the gateway's wallet, to sign GetOrchestrator as the gateway does")
    w.add_argument(
        "--eth-keystore-path", "-ethKeystorePath", dest="eth_keystore_path", default="", metavar="PATH",
        help="the gateway's keystore file or directory (default DATA_DIR/gateway/keystore if any)",
    )  # fmt: skip
    w.add_argument("--eth-acct-addr", "-ethAcctAddr", dest="eth_acct_addr", default="", metavar="ADDRESS")
    w.add_argument(
        "--eth-password", "-ethPassword", dest="eth_password", default="", metavar="PASSWORD",
        help="the keystore's password, or a file holding it (default DATA_DIR/devchain-password if any)",
    )  # fmt: skip


def run_dashboard_command(args: argparse.Namespace) -> int:
    from lpnode.dashboard.standalone import run_dashboard
    from lpnode.logs import configure_logging

    configure_logging("warning")
    run_dashboard(args.source, args.listen, args.interval, admin_token=read_admin_token(args.admin_token))
    return 0


def run_status_command(args: argparse.Namespace) -> int:
    from lpnode.dashboard.status_command import run_status

    both = args.gateway is None and args.orchestrator is None
    gateway = args.gateway or (DEFAULT_GATEWAY if both else None)
    orchestrator = args.orchestrator or (DEFAULT_ORCHESTRATOR if both else None)
    return run_status(gateway, orchestrator, sys.stdout, admin_token=read_admin_token(args.admin_token))


def run_doctor_command(args: argparse.Namespace, files: NodeFiles, advertisement: Advertisement) -> int:
    """``lpnode doctor`` with the orchestrator's side (``files``) and the gateway's (``advertisement``)."""
    from lpnode.dashboard.doctor import run_doctor

    up_dir = Path(args.data_dir).expanduser()
    ai_models = args.ai_models or ((up_dir / "aiModels.json") if (up_dir / "aiModels.json").is_file() else None)
    models_dir = args.models_dir or (
        (up_dir / "models") if (up_dir / "models").is_dir() else files.default_models_dir()
    )
    return run_doctor(
        args.orchestrator,
        args.gateway,
        ai_models,
        models_dir.expanduser(),
        sys.stdout,
        files=files,
        advertisement=advertisement,
        wallet=gateway_wallet(args, up_dir),
    )


def gateway_wallet(args: argparse.Namespace, up_dir: Path) -> GatewayWallet | None:
    """The gateway's wallet the doctor signs with: the flags', else ``lpnode up --network devchain``'s in
    ``up_dir``; ``None`` when there is none. Nothing is unlocked here."""
    from lpnode.payments.keystore import read_password

    keystore = Path(args.eth_keystore_path).expanduser() if args.eth_keystore_path else up_dir / "gateway" / "keystore"
    if not keystore.exists():
        return None
    password = args.eth_password
    if not password and (up_dir / "devchain-password").is_file():
        password = str(up_dir / "devchain-password")
    return GatewayWallet(keystore, args.eth_acct_addr, read_password(password))
