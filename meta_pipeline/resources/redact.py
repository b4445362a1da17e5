"""Keep the access token, app secret and appsecret_proof out of every text we emit.

Secrets are registered once per client (raw and URL-encoded forms). Every log
record of the loggers we and our HTTP stack use passes a ``logging.Filter`` that
rewrites its message; exception messages, tenacity retry messages and ledger
entries go through :func:`redact` before they are built.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"

# Loggers that can see request URLs or our own messages. A logging.Filter only
# applies to records created on the logger it is attached to, so children are
# listed one by one.
REDACTED_LOGGERS = (
    "meta_pipeline",
    "meta_pipeline.resources",
    "meta_pipeline.resources.meta_api",
    "meta_pipeline.resources.reports",
    "meta_pipeline.resources.pacing",
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.response",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "requests",
    "tenacity",
)

# Shapes a secret can take even when it was never registered (a foreign token).
_PATTERNS = (
    re.compile(r"(access_token=)[^&\s\"'#]+", re.IGNORECASE),
    re.compile(r"(appsecret_proof=)[^&\s\"'#]+", re.IGNORECASE),
    re.compile(r"(\"access_token\"\s*:\s*\")[^\"]*", re.IGNORECASE),
    re.compile(r"(\"appsecret_proof\"\s*:\s*\")[^\"]*", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=%-]+", re.IGNORECASE),
)

_lock = threading.Lock()
_secrets: set[str] = set()


def _variants(secret: str) -> set[str]:
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        urllib.parse.quote(secret),
    }


def register_secrets(secrets: Iterable[str | None]) -> None:
    """Remember secrets (and their URL-encoded forms) for every later redaction."""
    with _lock:
        for secret in secrets:
            # Very short values would mask ordinary words; they are not real secrets.
            if secret and len(secret) >= 4:
                _secrets.update(v for v in _variants(secret) if v)


def redact(text: object) -> str:
    """``text`` as a string with every registered secret and secret-shaped value masked."""
    value = text if isinstance(text, str) else str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in value:
            value = value.replace(secret, MASK)
    for pattern in _PATTERNS:
        value = pattern.sub(lambda m: m.group(1) + MASK, value)
    return value


def redact_value(value: Any) -> Any:
    """Redact strings inside a JSON-like structure (for ledger entries)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: (MASK if k in ("access_token", "appsecret_proof") else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and arguments) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not leak its arguments either
            message = f"{record.msg!s} {record.args!s}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so handlers never render the raw one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_filter = RedactingFilter()


def install_log_redaction(extra_loggers: Iterable[str] = ()) -> None:
    """Attach the redacting filter to our loggers and the HTTP stack's (idempotent)."""
    for name in (*REDACTED_LOGGERS, *extra_loggers):
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
