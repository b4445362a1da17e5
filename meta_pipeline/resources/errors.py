"""Meta Graph API errors, classified by code and subcode (graph-api.md section 3).

Transient classes (``MetaTransientError`` and subclasses) are the only ones the
client retries; everything else fails at once with code, subcode, message and
trace id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .redact import redact


class MetaConfigError(ValueError):
    """A missing or malformed setting; the message is one line naming it."""


class MetaInputError(ValueError):
    """Bad input (account id, edge, field, date range) caught before any request."""


class MetaApiError(Exception):
    """An answer from the Graph API (or the lack of one) that is not a success."""

    kind = "api_error"

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        path: str | None = None,
    ) -> None:
        # Whatever the server or a transport library put in the text, no secret stays.
        self.message = redact(message)
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.path = path
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [self.message]
        details = []
        if self.code is not None:
            details.append(f"code={self.code}")
        if self.subcode is not None:
            details.append(f"subcode={self.subcode}")
        if self.http_status is not None:
            details.append(f"http={self.http_status}")
        if self.fbtrace_id:
            details.append(f"fbtrace_id={self.fbtrace_id}")
        if self.path:
            details.append(f"path={redact(self.path)}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    @property
    def failure_key(self) -> str:
        """Key for ``RequestStats.failures_by_code``."""
        if self.code is None:
            return self.kind
        if self.subcode is None:
            return str(self.code)
        return f"{self.code}/{self.subcode}"


class MetaTransientError(MetaApiError):
    """Worth retrying with backoff: 5xx, code 1/2, ``is_transient``."""

    kind = "transient"


class MetaTransportError(MetaTransientError):
    """No usable answer: reset, timeout, truncated body, a 200 that is not JSON."""

    kind = "transport"


class MetaThrottledError(MetaTransientError):
    """A rate limit (HTTP 429, codes 4, 17, 32, 613, 80000-80014).

    ``min_wait_seconds`` is the longest of ``Retry-After`` and
    ``estimated_time_to_regain_access`` (minutes in the header, seconds here).
    """

    kind = "throttled"

    def __init__(self, message: str, *, min_wait_seconds: float = 0.0, **kwargs: Any) -> None:
        self.min_wait_seconds = min_wait_seconds
        super().__init__(message, **kwargs)


class MetaReduceDataError(MetaTransientError):
    """ "Please reduce the amount of data": retry with a smaller page."""

    kind = "reduce_data"


class MetaPermanentError(MetaApiError):
    """Retrying will not help."""

    kind = "permanent"


class MetaAuthError(MetaPermanentError):
    """Code 190: the access token is invalid or expired."""

    kind = "auth"


class MetaPermissionError(MetaPermanentError):
    """Codes 10 and 200-299: the token lacks a permission."""

    kind = "permission"


class MetaInvalidRequestError(MetaPermanentError):
    """Code 100 and friends: a bad parameter, field or date range."""

    kind = "invalid_request"


class MetaNotFoundError(MetaInvalidRequestError):
    """The object does not exist or cannot be seen with this token."""

    kind = "not_found"


class ForeignNextUrlError(MetaPermanentError):
    """``paging.next`` points to a host other than ``graph_url``: never followed."""

    kind = "foreign_next"


class RetryBudgetExhausted(MetaApiError):
    """A transient failure outlasted the retry budget (attempts or total seconds)."""

    kind = "retry_budget"

    def __init__(self, last: MetaApiError, attempts: int, elapsed_seconds: float) -> None:
        self.last = last
        self.attempts = attempts
        self.elapsed_seconds = elapsed_seconds
        super().__init__(
            f"gave up after {attempts} attempts in {elapsed_seconds:.1f}s "
            f"(retry budget exhausted); last error: {last.message}",
            code=last.code,
            subcode=last.subcode,
            fbtrace_id=last.fbtrace_id,
            http_status=last.http_status,
            path=last.path,
        )

    @property
    def failure_key(self) -> str:
        return self.last.failure_key


THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
PERMISSION_CODES = frozenset({10, *range(200, 300)})
# 100/33: "Unsupported get request. Object with ID ... does not exist"; 803: alias unknown.
NOT_FOUND_SUBCODES = frozenset({33})
NOT_FOUND_CODES = frozenset({803})
REDUCE_DATA_MARKER = "reduce the amount of data"
REDUCE_DATA_SUBCODES = frozenset({1487534})


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def classify_error(
    http_status: int,
    body: Mapping[str, Any] | None,
    *,
    path: str | None = None,
    throttle_wait_seconds: float = 0.0,
) -> MetaApiError:
    """Map a non-success response to the exception the client acts on.

    ``body`` is the decoded JSON (``None`` when there was no JSON error object);
    ``throttle_wait_seconds`` comes from Retry-After / BUC headers.
    """
    error = (body or {}).get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        error = {}
    code = _as_int(error.get("code"))
    subcode = _as_int(error.get("error_subcode"))
    message = str(error.get("message") or f"HTTP {http_status} from the Graph API")
    user_msg = error.get("error_user_msg")
    if user_msg and str(user_msg) not in message:
        message = f"{message}: {user_msg}"
    trace = error.get("fbtrace_id")
    kwargs: dict[str, Any] = {
        "code": code,
        "subcode": subcode,
        "fbtrace_id": str(trace) if trace else None,
        "http_status": http_status,
        "path": path,
    }
    if REDUCE_DATA_MARKER in message.lower() or (code == 100 and subcode in REDUCE_DATA_SUBCODES):
        return MetaReduceDataError(message, **kwargs)
    if http_status == 429 or code in THROTTLE_CODES:
        return MetaThrottledError(message, min_wait_seconds=throttle_wait_seconds, **kwargs)
    if code == 190 or http_status == 401:
        return MetaAuthError(
            f"access token expired or invalid: {message}",
            **kwargs,
        )
    if code in PERMISSION_CODES or http_status == 403:
        return MetaPermissionError(f"permission denied: {message}", **kwargs)
    if code in NOT_FOUND_CODES or (code == 100 and subcode in NOT_FOUND_SUBCODES):
        return MetaNotFoundError(message, **kwargs)
    if http_status == 404 and code is None:
        return MetaNotFoundError(message, **kwargs)
    if code in (1, 2) or error.get("is_transient") is True or http_status >= 500:
        return MetaTransientError(message, **kwargs)
    if code is None and not error:
        # A 4xx without a Graph error object: treat as a bad request, do not retry.
        return MetaInvalidRequestError(message, **kwargs)
    return MetaInvalidRequestError(message, **kwargs)
