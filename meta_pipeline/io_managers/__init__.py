"""GCS storage of page streams: atomic, resumable, self-describing partitions."""

from meta_pipeline.io_managers.gcs import MetaGCSIOManager
from meta_pipeline.io_managers.layout import PartitionLocation, partition_location
from meta_pipeline.io_managers.manifest import Manifest, StoredObject
from meta_pipeline.io_managers.store import (
    CorruptObject,
    PartitionChangedWhileReading,
    PartitionNotCommitted,
    PartitionStore,
    StorageAccessError,
)

__all__ = [
    "CorruptObject",
    "Manifest",
    "MetaGCSIOManager",
    "PartitionChangedWhileReading",
    "PartitionLocation",
    "PartitionNotCommitted",
    "PartitionStore",
    "StorageAccessError",
    "StoredObject",
    "partition_location",
]
