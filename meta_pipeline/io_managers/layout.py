"""Every GCS object name of the pipeline is built here, and only here.

::

    <prefix>/<asset path>/account_id=<act_..>/date=<YYYY-MM-DD>/_manifest.json
    <prefix>/<asset path>/account_id=<act_..>/date=<YYYY-MM-DD>/attempt=<id>/part-00000.jsonl.gz
    <prefix>/<asset path>/account_id=<act_..>/date=<YYYY-MM-DD>/attempt=<id>/_ledger.json

Names derive only from the asset key, the validated partition key and the attempt
id (never the clock), so a resumed attempt rewrites the same names and a new
attempt chain never touches names a committed manifest lists.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from meta_pipeline.partitions import AccountDay, parse_partition_key

MANIFEST_FILE = "_manifest.json"
LEDGER_FILE = "_ledger.json"
DATA_SUFFIX = ".jsonl.gz"

# Conservative on purpose: these segments end up in object names and gs:// URIs.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ATTEMPT = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


class InvalidStorageName(ValueError):
    """A bucket, prefix, asset path or attempt id unsafe to put in an object name."""


def validate_bucket(bucket: object) -> str:
    if not isinstance(bucket, str) or not bucket.strip():
        raise InvalidStorageName("GCS bucket is not set: set GCS_BUCKET to an existing bucket")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidStorageName(f"Invalid GCS bucket name {bucket!r} (setting GCS_BUCKET)")
    return bucket


def validate_prefix(prefix: object) -> str:
    """``a/b`` style prefix, possibly empty; no ``..``, no empty or odd segments."""
    if not isinstance(prefix, str):
        raise InvalidStorageName(f"Invalid GCS prefix {prefix!r} (setting GCS_PREFIX)")
    cleaned = prefix.strip("/")
    if cleaned and not all(_SEGMENT.fullmatch(s) and s != ".." for s in cleaned.split("/")):
        raise InvalidStorageName(
            f"Invalid GCS prefix {prefix!r} (setting GCS_PREFIX): use letters, digits, '_', '-', '.'"
        )
    return cleaned


def asset_path(asset_key: dg.AssetKey | Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(asset_key, dg.AssetKey):
        parts: Sequence[str] = asset_key.path
    elif isinstance(asset_key, str):
        parts = asset_key.split("/")
    else:
        parts = list(asset_key)
    if not parts or not all(isinstance(p, str) and _SEGMENT.fullmatch(p) for p in parts):
        raise InvalidStorageName(f"Asset key {asset_key!r} cannot be used as a storage path")
    return tuple(parts)


def validate_attempt_id(attempt_id: object) -> str:
    if not isinstance(attempt_id, str) or not _ATTEMPT.fullmatch(attempt_id):
        raise InvalidStorageName(f"Invalid attempt id {attempt_id!r}")
    return attempt_id


def attempt_id_for(*parts: str) -> str:
    """A short stable id for an attempt chain, e.g. from its root run id."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:16]


def asset_folder(prefix: str, asset_key: dg.AssetKey | Sequence[str] | str) -> str:
    """``<prefix>/<asset path>/``: the folder holding every partition of an asset."""
    parts = [validate_prefix(prefix)] if validate_prefix(prefix) else []
    return "/".join([*parts, *asset_path(asset_key)]) + "/"


_MANIFEST_TAIL = re.compile(
    r"account_id=(?P<account>act_[0-9]{1,20})/date=(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})/"
    + re.escape(MANIFEST_FILE)
)


def partition_key_of_manifest(folder: str, object_name: str) -> str | None:
    """The partition key of a ``_manifest.json`` directly under ``folder`` (else None)."""
    if not object_name.startswith(folder):
        return None
    match = _MANIFEST_TAIL.fullmatch(object_name[len(folder) :])
    if match is None:
        return None
    return parse_partition_key(f"{match['account']}|{match['date']}").partition_key


@dataclass(frozen=True)
class PartitionLocation:
    """Where one asset partition lives in the bucket."""

    bucket: str
    prefix: str
    asset: tuple[str, ...]
    partition: AccountDay

    @property
    def asset_name(self) -> str:
        return "/".join(self.asset)

    @property
    def partition_key(self) -> str:
        return self.partition.partition_key

    @property
    def folder(self) -> str:
        parts = [self.prefix] if self.prefix else []
        parts += [
            *self.asset,
            f"account_id={self.partition.account_id}",
            f"date={self.partition.day.isoformat()}",
        ]
        return "/".join(parts)

    @property
    def manifest_name(self) -> str:
        return f"{self.folder}/{MANIFEST_FILE}"

    @property
    def manifest_uri(self) -> str:
        return f"gs://{self.bucket}/{self.manifest_name}"

    @property
    def folder_uri(self) -> str:
        return f"gs://{self.bucket}/{self.folder}/"

    def attempt_folder(self, attempt_id: str) -> str:
        return f"{self.folder}/attempt={validate_attempt_id(attempt_id)}"

    def data_object_path(self, attempt_id: str, index: int) -> str:
        """Name relative to :attr:`folder`, as listed in the manifest."""
        if index < 0:
            raise ValueError("object index must be >= 0")
        return f"attempt={validate_attempt_id(attempt_id)}/part-{index:05d}{DATA_SUFFIX}"

    def ledger_path(self, attempt_id: str) -> str:
        return f"attempt={validate_attempt_id(attempt_id)}/{LEDGER_FILE}"

    def object_name(self, relative_path: str) -> str:
        """Full object name of a path listed in a manifest (relative to the folder)."""
        segments = relative_path.split("/")
        if not relative_path or any(s in ("", ".", "..") for s in segments):
            raise InvalidStorageName(f"Invalid object path {relative_path!r} in manifest")
        return f"{self.folder}/{relative_path}"

    def relative_path(self, object_name: str) -> str:
        base = f"{self.folder}/"
        if not object_name.startswith(base):
            raise InvalidStorageName(f"{object_name!r} is not inside {base!r}")
        return object_name[len(base) :]


def partition_location(
    bucket: str,
    prefix: str,
    asset_key: dg.AssetKey | Sequence[str] | str,
    partition_key: object,
) -> PartitionLocation:
    """Validate everything first (partition key included), then build the location."""
    account_day = parse_partition_key(partition_key)
    return PartitionLocation(
        bucket=validate_bucket(bucket),
        prefix=validate_prefix(prefix),
        asset=asset_path(asset_key),
        partition=account_day,
    )
