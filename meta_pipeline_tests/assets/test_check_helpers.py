"""The check helpers the insights asset uses to read its partition back only once."""

from __future__ import annotations

from decimal import Decimal

from meta_pipeline.assets import checks


def test_duplicate_keys_counts_repeats_with_breakdown_columns_and_unhashable_values() -> None:
    rows = [
        {"ad_id": "1", "date_start": "2026-11-01", "age": "18-24"},
        {"ad_id": "1", "date_start": "2026-11-01", "age": "25-34"},
        {"ad_id": "1", "date_start": "2026-11-01", "age": "18-24"},  # repeat
        {"ad_id": "2", "date_start": "2026-11-01", "age": ["odd"]},
        {"ad_id": "2", "date_start": "2026-11-01", "age": ["odd"]},  # repeat, unhashable value
        {"ad_id": "3", "date_start": "2026-11-01"},  # missing column
        {"ad_id": "3", "date_start": "2026-11-01", "age": "null"},  # a string, not missing
        {"ad_id": "4", "date_start": "2026-11-01", "age": 25},
        {"ad_id": "4", "date_start": "2026-11-01", "age": "25"},  # a string, not the number
        {"ad_id": "5\x1f2026-11-01", "date_start": "x", "age": "a"},  # holds the separator
        {"ad_id": "5", "date_start": "2026-11-01\x1fx", "age": "a"},
    ]
    duplicates, examples = checks.duplicate_keys(rows, ("ad_id", "date_start", "age"))
    assert duplicates == 2
    assert examples == ['["1", "2026-11-01", "18-24"]', '["2", "2026-11-01", ["odd"]]']


def test_spend_totals_pass_records_through_and_sum_them_exactly() -> None:
    rows = [
        {"spend": "0.10", "impressions": "3"},
        {"spend": "0.20", "impressions": 4},
        {"spend": None},
        {"spend": "not a number", "impressions": "1"},
    ]
    totals = checks.SpendTotals()
    passed = list(totals.tally(iter(rows)))
    assert passed == rows
    assert totals.spend == Decimal("0.30")  # exact: 0.1 + 0.2 in floats would not be
    assert totals.impressions == 8
