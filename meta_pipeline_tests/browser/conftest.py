"""The Dagster UI on data the real pipeline wrote, and Debian's headless Chromium to look at it.

The instance is filled by ``make demo``'s code (simulator, on-disk GCS emulator, Dagster runs
of ``meta_extract``); the webserver runs against it with the simulator and the emulator still
up, as ``make ui`` has them. Chromium is the system one: no browser is ever downloaded.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from meta_pipeline.demo import DemoWorld, demo_days, demo_world, run_demo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` refreshes the README's pictures; a plain test run leaves the tree clean.
SCREENSHOTS = Path(
    os.environ.get("SCREENSHOTS_DIR") or tempfile.gettempdir() + "/meta_pipeline_screenshots"
)
ACCOUNTS = 2
DAYS = 3
_WEBSERVER_START_SECONDS = 180.0


@dataclass
class DagsterUI:
    base_url: str
    world: DemoWorld
    partition_keys: list[str]
    days: list[str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _WEBSERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagster-webserver exited:\n{log.read_text()[-3000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{url}/server_info", timeout=5) as response,
        ):
            if response.status == 200:
                return
        time.sleep(1)
    raise AssertionError(f"dagster-webserver not serving:\n{log.read_text()[-3000:]}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="package")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    workdir = tmp_path_factory.mktemp("ui")
    out = io.StringIO()
    # Real runs of meta_extract, through Dagster, against the simulator and the emulator.
    code = run_demo(workdir, accounts=ACCOUNTS, days=DAYS, profile="clean", out=out)
    assert code == 0, out.getvalue()[-3000:]
    with demo_world(workdir, accounts=ACCOUNTS, profile="clean") as world:
        days = [d.isoformat() for d in demo_days(world.sim.today, DAYS)]
        keys = [f"{a}|{d}" for a in world.account_ids for d in days]
        port = _free_port()
        log = workdir / "webserver.log"
        webserver = str(Path(sys.executable).parent / "dagster-webserver")
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [webserver, "-m", "meta_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)],
                env={**os.environ, **world.env},
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # webserver and code server stop together
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_serving(url, process, log)
            yield DagsterUI(base_url=url, world=world, partition_keys=keys, days=days)
        finally:
            _stop_group(process)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    context.set_default_timeout(60_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def open_page(page: Page, ui: DagsterUI, path: str) -> None:
    """Go to ``path`` and close the community sign-up dialog if the UI shows it."""
    page.goto(f"{ui.base_url}{path}")
    skip = page.get_by_role("button", name="Skip")
    with contextlib.suppress(PlaywrightTimeout):
        skip.wait_for(state="visible", timeout=5_000)
        skip.click()
        skip.wait_for(state="hidden")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
