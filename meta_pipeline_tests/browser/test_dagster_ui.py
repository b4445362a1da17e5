"""What a user sees in the Dagster UI after the pipeline ran: the asset graph, the
``meta/insights`` partitions, one materialization's metadata and the asset checks.

Each test saves the screenshot the README shows (`make screenshots` writes docs/screenshots/).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse

import pytest
from google.cloud import storage
from playwright.sync_api import Page, expect

from meta_pipeline.assets.insights import INSIGHTS_KEY
from meta_pipeline.demo import DEMO_BUCKET, DEMO_PROJECT
from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline_tests.browser.conftest import CHROMIUM, DagsterUI, open_page, screenshot

pytestmark = [
    # The one allowed skip: CI installs the package (make system-deps); no browser is downloaded.
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium package is not installed (make system-deps)",
    ),
    pytest.mark.timeout(900),
]

ASSET_NAMES = [
    "ad_accounts", "campaigns", "adsets", "ads", "adcreatives", "insights", "daily_campaign_spend",
]  # fmt: skip


def _partitions_path(ui: DagsterUI, partition: str | None = None) -> str:
    # A week, so the materialized days show next to days that are not.
    first = dt.date.fromisoformat(ui.days[-1]) - dt.timedelta(days=6)
    query = {"view": "partitions", "date_range": f"[{first.isoformat()}...{ui.days[-1]}]"}
    if partition:
        query["partition"] = partition
    return f"/assets/meta/insights?{urllib.parse.urlencode(query)}"


def test_asset_graph_shows_every_meta_asset_with_its_checks(
    dagster_ui: DagsterUI, page: Page
) -> None:
    page.set_viewport_size({"width": 1440, "height": 1280})
    open_page(page, dagster_ui, "/asset-groups/meta")
    expect(page.get_by_text("daily_campaign_spend", exact=True).first).to_be_visible()
    # Zoom out one step (as a user does with Ctrl + wheel) so every node fits the picture.
    page.mouse.move(1000, 640)
    page.keyboard.down("Control")
    for _ in range(2):
        page.mouse.wheel(0, 50)
    page.keyboard.up("Control")
    page.mouse.move(5, 1270)
    for name in ASSET_NAMES:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    # Every checked asset's node reports its latest checks; none failed.
    expect(page.get_by_text(re.compile(r"\d+ / \d+ Passed")).first).to_be_visible()
    expect(page.get_by_text("Failed", exact=False)).to_have_count(0)
    screenshot(page, "asset-graph")


def test_insights_partitions_view_shows_the_materialized_partitions(
    dagster_ui: DagsterUI, page: Page
) -> None:
    open_page(page, dagster_ui, _partitions_path(dagster_ui))
    materialized = len(dagster_ui.partition_keys)
    expect(page.get_by_text(f"Materialized ({materialized})", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
    expect(
        page.get_by_text(
            f"Missing ({len(dagster_ui.world.account_ids) * 7 - materialized})", exact=True
        )
    ).to_be_visible()
    for account in dagster_ui.world.account_ids:
        expect(page.get_by_text(account, exact=True).first).to_be_visible()
    for day in dagster_ui.days:
        expect(page.get_by_text(day, exact=True).first).to_be_visible()
    screenshot(page, "partitions")


def test_a_materialization_shows_the_metadata_the_manifest_holds(
    dagster_ui: DagsterUI, page: Page
) -> None:
    key = dagster_ui.partition_keys[-1]
    store = PartitionStore(storage.Client(project=DEMO_PROJECT), DEMO_BUCKET, "")
    manifest = store.read_manifest(INSIGHTS_KEY, key)
    assert manifest is not None and manifest.records > 0
    open_page(page, dagster_ui, _partitions_path(dagster_ui, key))
    expect(page.get_by_text(key, exact=True).first).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
    expect(page.get_by_text("meta_extract").first).to_be_visible()
    # The UI shows what the committed manifest says: same record count, same location.
    records_row = page.locator("tr", has=page.get_by_text("records", exact=True)).first
    expect(records_row).to_contain_text(str(manifest.records))
    location = store.location(INSIGHTS_KEY, key)
    expect(page.get_by_text(location.manifest_uri, exact=True).first).to_be_attached()
    for field in ("logical_requests", "retries", "throttle_wait_seconds", "accuracy"):
        expect(page.get_by_text(field, exact=True).first).to_be_visible()
    screenshot(page, "materialization")


def test_insights_checks_passed_on_the_latest_partition(dagster_ui: DagsterUI, page: Page) -> None:
    from meta_pipeline.definitions import build_definitions

    check_names = sorted(
        k.name for k in build_definitions().resolve_assets_def(INSIGHTS_KEY).check_keys
    )
    assert check_names
    open_page(page, dagster_ui, "/assets/meta/insights?view=checks")
    expect(page.get_by_text(f"Checks ({len(check_names)})", exact=True)).to_be_visible()
    for name in check_names:
        item = page.get_by_text(name, exact=True).first
        expect(item).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(check_names))
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    screenshot(page, "checks")
