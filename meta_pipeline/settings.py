"""Extraction settings that are not secrets: insights shape, finality, check thresholds."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

DEFAULT_INSIGHTS_FIELDS = (
    "account_id",
    "campaign_id",
    "adset_id",
    "ad_id",
    "ad_name",
    "impressions",
    "reach",
    "clicks",
    "spend",
    "cpc",
    "cpm",
    "ctr",
    "actions",
    "date_start",
    "date_stop",
)


class ExtractionSettings(dg.ConfigurableResource):
    """What to extract and how strict the asset checks are."""

    insights_fields: list[str] = Field(default=list(DEFAULT_INSIGHTS_FIELDS))
    insights_breakdowns: list[str] = Field(
        default_factory=list, description="e.g. ['age', 'gender']; part of the primary key"
    )
    action_attribution_windows: list[str] = Field(
        default_factory=lambda: ["1d_click", "7d_click", "28d_click", "1d_view"]
    )
    use_async_insights: bool = Field(
        default=True, description="Async report runs (robust for large accounts) or sync GET"
    )
    attribution_lookback_days: int = Field(
        default=28, ge=0, le=90, description="Days whose numbers may still change"
    )
    min_accuracy: float = Field(
        default=0.99, ge=0.0, le=1.0, description="Accuracy check threshold"
    )
    reconciliation_tolerance: float = Field(
        default=0.001,
        ge=0.0,
        description="Relative gap allowed between ad-level and account totals",
    )
