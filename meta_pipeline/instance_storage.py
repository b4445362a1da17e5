"""Dagster's PostgreSQL instance storage, holding a small pool of connections per process.

Outside the webserver, dagster-postgres opens a new database connection for every
statement (SQLAlchemy ``NullPool``) so that idle processes hold none. A run writes tens
of events per partition and each takes several statements: measured on the backfill
benchmark, a 5-day range run opened 1,249 connections and spent 12.5 of its 25 seconds
connecting. This storage is ``storage: postgres`` with the engines the webserver already
uses (one pooled connection per storage and process, a few overflow connections, recycled
hourly), so a run worker connects a handful of times instead of once per statement.

Configure it in ``dagster.yaml`` under ``storage: custom`` with the same ``postgres_db``
settings as ``storage: postgres`` (deploy/dagster.yaml does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

# Connections beyond the pooled one while several threads write at once (closed after use).
MAX_OVERFLOW = 4
# Reconnect pooled connections older than this (server-side idle timeouts, failovers).
POOL_RECYCLE_SECONDS = 3600
# No statement timeout, as with dagster-postgres's own engines outside the webserver.
NO_STATEMENT_TIMEOUT = 0


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` with pooled connections (same configuration)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage.optimize_for_webserver(
                statement_timeout=NO_STATEMENT_TIMEOUT,
                pool_recycle=POOL_RECYCLE_SECONDS,
                max_overflow=MAX_OVERFLOW,
            )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
