"""The ``_manifest.json`` of a committed partition: the only thing readers trust."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meta_pipeline.pages import JsonDict

MANIFEST_FORMAT = "meta_pipeline.partition/v1"


class InvalidManifest(ValueError):
    """A manifest that cannot be parsed or is of an unknown format."""


@dataclass(frozen=True)
class StoredObject:
    """A data or ledger object; ``path`` is relative to the partition folder."""

    path: str
    records: int
    bytes: int
    crc32c: str  # base64, as GCS reports it
    md5: str  # base64, as GCS reports it

    def to_dict(self) -> JsonDict:
        return {
            "path": self.path,
            "records": self.records,
            "bytes": self.bytes,
            "crc32c": self.crc32c,
            "md5": self.md5,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredObject:
        return cls(
            path=str(data["path"]),
            records=int(data["records"]),
            bytes=int(data["bytes"]),
            crc32c=str(data["crc32c"]),
            md5=str(data["md5"]),
        )


@dataclass(frozen=True)
class Manifest:
    asset: str
    partition: str
    account_id: str
    date: str
    attempt_id: str
    run_id: str | None
    extracted_at: str  # ISO-8601 UTC, when the partition was committed
    api_version: str | None
    fingerprint: str | None
    objects: tuple[StoredObject, ...]
    ledger: StoredObject | None = None
    primary_key: tuple[str, ...] = ()
    source: JsonDict = field(default_factory=dict)
    request_stats: JsonDict = field(default_factory=dict)
    pages: int = 0
    api_total_count: int | None = None
    resumed: bool = False
    resumed_from_objects: int = 0

    @property
    def records(self) -> int:
        return sum(o.records for o in self.objects)

    @property
    def total_bytes(self) -> int:
        return sum(o.bytes for o in self.objects)

    @property
    def ledger_entries(self) -> int:
        return self.ledger.records if self.ledger else 0

    @property
    def final(self) -> bool | None:
        value = self.source.get("final")
        return bool(value) if value is not None else None

    def to_dict(self) -> JsonDict:
        return {
            "format": MANIFEST_FORMAT,
            "asset": self.asset,
            "partition": self.partition,
            "account_id": self.account_id,
            "date": self.date,
            "attempt_id": self.attempt_id,
            "run_id": self.run_id,
            "extracted_at": self.extracted_at,
            "api_version": self.api_version,
            "fingerprint": self.fingerprint,
            "primary_key": list(self.primary_key),
            "final": self.final,
            "source": self.source,
            "totals": {
                "records": self.records,
                "objects": len(self.objects),
                "bytes": self.total_bytes,
                "pages": self.pages,
                "ledger_entries": self.ledger_entries,
                "api_total_count": self.api_total_count,
            },
            "objects": [o.to_dict() for o in self.objects],
            "ledger": self.ledger.to_dict() if self.ledger else None,
            "request_stats": self.request_stats,
            "resumed": self.resumed,
            "resumed_from_objects": self.resumed_from_objects,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidManifest(f"manifest is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise InvalidManifest(f"unknown manifest format {data.get('format')!r}")
        try:
            totals = data.get("totals") or {}
            return cls(
                asset=str(data["asset"]),
                partition=str(data["partition"]),
                account_id=str(data["account_id"]),
                date=str(data["date"]),
                attempt_id=str(data["attempt_id"]),
                run_id=data.get("run_id"),
                extracted_at=str(data["extracted_at"]),
                api_version=data.get("api_version"),
                fingerprint=data.get("fingerprint"),
                objects=tuple(StoredObject.from_dict(o) for o in data["objects"]),
                ledger=StoredObject.from_dict(data["ledger"]) if data.get("ledger") else None,
                primary_key=tuple(data.get("primary_key") or ()),
                source=dict(data.get("source") or {}),
                request_stats=dict(data.get("request_stats") or {}),
                pages=int(totals.get("pages", 0)),
                api_total_count=totals.get("api_total_count"),
                resumed=bool(data.get("resumed", False)),
                resumed_from_objects=int(data.get("resumed_from_objects", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidManifest(f"manifest is missing or has a bad field: {exc}") from exc
