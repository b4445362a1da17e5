"""The Meta Graph API client (``MetaAdsClient``) and what it raises."""

from .clock import Clock, FakeClock, SystemClock
from .errors import (
    ForeignNextUrlError,
    MetaApiError,
    MetaAuthError,
    MetaConfigError,
    MetaInputError,
    MetaInvalidRequestError,
    MetaNotFoundError,
    MetaPermanentError,
    MetaPermissionError,
    MetaReduceDataError,
    MetaThrottledError,
    MetaTransientError,
    MetaTransportError,
    RetryBudgetExhausted,
)
from .meta_api import EdgeSource, MetaAdsClient
from .reports import InsightsSource

__all__ = [
    "Clock",
    "EdgeSource",
    "FakeClock",
    "ForeignNextUrlError",
    "InsightsSource",
    "MetaAdsClient",
    "MetaApiError",
    "MetaAuthError",
    "MetaConfigError",
    "MetaInputError",
    "MetaInvalidRequestError",
    "MetaNotFoundError",
    "MetaPermanentError",
    "MetaPermissionError",
    "MetaReduceDataError",
    "MetaThrottledError",
    "MetaTransientError",
    "MetaTransportError",
    "RetryBudgetExhausted",
    "SystemClock",
]
