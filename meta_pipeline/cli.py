"""The ``meta-pipeline`` command: simulator, accounts, demo, ui, retry-failed."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import load_dotenv

from meta_pipeline.resources.redact import redact

if TYPE_CHECKING:
    from dagster import DagsterInstance

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meta-pipeline",
        description="Meta Marketing API to Google Cloud Storage, as Dagster assets.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_simulator_command(commands)
    _add_accounts_command(commands)
    _add_demo_command(commands)
    _add_retry_failed_command(commands)
    _add_ui_command(commands)
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


def _add_accounts_command(commands: argparse._SubParsersAction) -> None:
    accounts = commands.add_parser(
        "accounts",
        help="manage the meta_ad_accounts partitions in $DAGSTER_HOME",
        description="Add, list or discover the ad accounts the assets are partitioned by.",
    )
    actions = accounts.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register ad accounts (act_<digits> or <digits>)")
    add.add_argument("account_ids", nargs="*", help="defaults to META_AD_ACCOUNT_IDS")
    add.set_defaults(handler=_accounts_add)
    listing = actions.add_parser("list", help="print the registered ad accounts")
    listing.set_defaults(handler=_accounts_list)
    discover = actions.add_parser(
        "discover", help="register every ad account the token can read (/me/adaccounts)"
    )
    discover.add_argument(
        "--dry-run", action="store_true", help="print what would be added, add nothing"
    )
    discover.set_defaults(handler=_accounts_discover)


def _instance() -> DagsterInstance:
    # Imported here so that `meta-pipeline simulator` starts without loading Dagster.
    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        raise CommandError("DAGSTER_HOME is not set: point it at the Dagster instance folder")
    return DagsterInstance.get()


def _accounts_add(args: argparse.Namespace) -> int:
    from meta_pipeline.accounts import add_accounts, configured_account_ids

    ids = list(args.account_ids) or configured_account_ids()
    if not ids:
        raise CommandError("no account ids given and META_AD_ACCOUNT_IDS is not set")
    with _instance() as instance:
        new = add_accounts(instance, ids)
    print(f"added {len(new)} ad account(s): {', '.join(new) or 'none (all known)'}")
    return 0


def _accounts_list(args: argparse.Namespace) -> int:
    from meta_pipeline.accounts import registered_accounts

    with _instance() as instance:
        for account in registered_accounts(instance):
            print(account)
    return 0


def _accounts_discover(args: argparse.Namespace) -> int:
    from meta_pipeline.accounts import add_accounts, discover_accounts, registered_accounts
    from meta_pipeline.config import build_resources

    # Resolves the EnvVar settings and opens the session, as a Dagster run would.
    with build_resources()["meta"].process_config_and_initialize_cm() as client:
        found = discover_accounts(client)
    with _instance() as instance:
        if args.dry_run:
            new = sorted(set(found) - set(registered_accounts(instance)))
        else:
            new = add_accounts(instance, found)
    verb = "would add" if args.dry_run else "added"
    print(f"{len(found)} ad account(s) readable; {verb} {len(new)}: {', '.join(new) or 'none'}")
    return 0


def _add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the main job on the simulator and a local GCS emulator (make demo)",
        description="Materialize every asset for the last days of simulated ad accounts.",
    )
    _add_world_arguments(demo)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument(
        "--refresh", action="store_true", help="materialize again what is already committed"
    )
    demo.set_defaults(handler=_run_demo)


def _add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's simulated world and where it lives; `demo` and `ui` share it."""
    parser.add_argument("--workdir", type=Path, default=Path(".demo"))
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--profile", choices=("clean", "realistic", "chaos"), default="realistic")


def _run_demo(args: argparse.Namespace) -> int:
    from meta_pipeline.demo import run_demo

    return run_demo(
        args.workdir,
        accounts=args.accounts,
        days=args.days,
        seed=args.seed,
        scale=args.scale,
        profile=args.profile,
        refresh=args.refresh,
    )


def _add_ui_command(commands: argparse._SubParsersAction) -> None:
    ui = commands.add_parser(
        "ui",
        help="the demo's world (simulator, GCS emulator, accounts) with `dagster dev` (make ui)",
        description=(
            "Start the simulator and the GCS emulator with the demo's data (.demo/), then the "
            "Dagster webserver and daemon on them until Ctrl-C."
        ),
    )
    _add_world_arguments(ui)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(handler=_run_ui)


def _run_ui(args: argparse.Namespace) -> int:
    from meta_pipeline.ui import run_ui

    return run_ui(
        args.workdir,
        accounts=args.accounts,
        seed=args.seed,
        scale=args.scale,
        profile=args.profile,
        host=args.host,
        port=args.port,
    )


def _add_retry_failed_command(commands: argparse._SubParsersAction) -> None:
    retry = commands.add_parser(
        "retry-failed",
        help="re-issue the failed requests kept in the ledgers and fold what succeeds in",
        description=(
            "Replays every partition's ledger of failed requests (only those requests) and "
            "commits the recovered records into their partitions. Safe to run again."
        ),
    )
    retry.set_defaults(handler=_retry_failed)


def _retry_failed(args: argparse.Namespace) -> int:
    from meta_pipeline.definitions import defs
    from meta_pipeline.jobs import retry_failed_requests_job

    with _instance() as instance:
        result = defs.resolve_job_def(retry_failed_requests_job.name).execute_in_process(
            instance=instance, raise_on_error=False
        )
    return 0 if result.success else 1


class CommandError(Exception):
    """A usage or setting problem, reported as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv(".env")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (CommandError, ValueError) as error:
        # Settings and input errors name what is at fault; one line, no traceback.
        print(f"meta-pipeline: {redact(str(error)).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
