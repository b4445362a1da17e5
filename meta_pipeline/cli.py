"""The ``meta-pipeline`` command: simulator, accounts, demo, retry-failed."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meta-pipeline",
        description="Meta Marketing API to Google Cloud Storage, as Dagster assets.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_simulator_command(commands)
    return parser


def _add_simulator_command(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser(
        "simulator",
        help="serve the simulated Meta Graph API (deterministic data, rate limits, faults)",
        description="Serve a local stand-in for the Meta Marketing API until Ctrl-C.",
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--accounts", type=int, default=3)
    sim.add_argument("--scale", type=float, default=1.0, help="1.0 is about 100 ads per account")
    sim.add_argument("--profile", choices=("clean", "realistic", "chaos"), default="clean")
    sim.add_argument("--token", default="sim-token", help="the access token clients must send")
    sim.add_argument(
        "--app-secret",
        default=None,
        help="when set, appsecret_proof (HMAC-SHA256 of the token) is required and checked",
    )
    sim.add_argument(
        "--today",
        type=dt.date.fromisoformat,
        default=None,
        help="simulated current day, YYYY-MM-DD (default: the real date)",
    )
    sim.set_defaults(handler=_run_simulator)


def _run_simulator(args: argparse.Namespace) -> int:
    # Imported here so other subcommands do not load the web server.
    from meta_pipeline.simulator import Simulator, SimulatorConfig

    config = SimulatorConfig(
        seed=args.seed,
        accounts=args.accounts,
        scale=args.scale,
        profile=args.profile,
        token=args.token,
        app_secret=args.app_secret,
        today=args.today,
    )
    simulator = Simulator(config)

    def announce(running: Simulator) -> None:
        print(f"Meta Graph API simulator ({config.profile}) at {running.base_url}", flush=True)
        print(f"  paths: {running.base_url}/{config.api_versions[-2]}/...", flush=True)
        print(f"  today: {running.today.isoformat()}", flush=True)
        # Only the public demo token is shown; a custom token or the app secret never is.
        token = config.token if config.token == "sim-token" else "(the --token value)"
        secret_note = ", appsecret_proof required" if config.app_secret else ""
        print(f"  access token: {token}{secret_note}", flush=True)
        for account in running.world.accounts:
            print(f"  {account.id}  {account.timezone_name}  {account.currency}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve_forever(args.host, args.port, on_ready=announce)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
