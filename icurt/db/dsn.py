"""DSN handling that never lets a password out."""

from __future__ import annotations

import logging
import re

# URL form: postgresql://user:secret@host/db ; key/value form: password=secret
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
REDACTED = "***"


def redact_dsn(text: str) -> str:
    """`text` with every DSN password replaced by ***; safe for logs, errors and snapshots."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + (REDACTED if m.group(2) else "") + m.group(3), text)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts DSN passwords from every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_dsn(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
