"""DSN handling that never lets a password out."""

from __future__ import annotations

import logging
import re

# URL form: postgresql://user:secret@host/db ; a URL's query: ...?password=secret&sslmode=... (the
# value ends at "&", which a URL's password must escape); key/value form: password=secret or
# password='a b' (the value ends at whitespace). What follows the value stays as it was, and so does
# the punctuation that ends a sentence around the DSN ("at <dsn>: reason", "(<dsn>)"): a run of
# ) : ; , . just before whitespace or the end is taken as that separator, not as the password's end.
_SEPARATOR = r"(?=[):;,.]*(?:\s|$))"
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&\s]*?)(?=&|[):;,.]*(?:\s|$))", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"((?<![?&\w])password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+?" + _SEPARATOR + ")",
                          re.IGNORECASE)
REDACTED = "***"


def redact_dsn(text: str) -> str:
    """`text` with every DSN password replaced by ***; safe for logs, errors and snapshots."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + (REDACTED if m.group(2) else "") + m.group(3), text)
    text = _QUERY_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts DSN passwords from every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_dsn(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
