"""The ``meta_ad_accounts`` dynamic partitions: add, list, discover, seed from settings."""

from __future__ import annotations

import os
from collections.abc import Iterable

import dagster as dg

from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME, validate_account_id
from meta_pipeline.resources.meta_api import MetaAdsClient


def registered_accounts(instance: dg.DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))


def add_accounts(instance: dg.DagsterInstance, account_ids: Iterable[str]) -> list[str]:
    """Validate every id first (nothing is added if one is bad); return the new ones."""
    wanted = [validate_account_id(a, source="ad account id") for a in account_ids]
    known = set(registered_accounts(instance))
    new = sorted(set(wanted) - known)
    if new:
        instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, new)
    return new


def configured_account_ids() -> list[str]:
    """``META_AD_ACCOUNT_IDS``: a comma-separated static list (optional)."""
    raw = os.environ.get("META_AD_ACCOUNT_IDS", "")
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    return [validate_account_id(a, source="setting META_AD_ACCOUNT_IDS entry") for a in ids]


def discover_accounts(client: MetaAdsClient) -> list[str]:
    """Every ad account the token can read (``/me/adaccounts``), validated."""
    return sorted(
        validate_account_id(record.get("id"), source="ad account id returned by /me/adaccounts")
        for record in client.list_ad_accounts()
    )
