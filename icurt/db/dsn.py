"""DSN handling that never lets a password out."""

from __future__ import annotations

import logging
import re

from icurt.errors import IcurtError

# URL form, any scheme (a DSN of the wrong kind must not leak either): mysql://user:secret@host/db ; a URL's query: ...?password=secret&sslmode=... (the
# value ends at "&", which a URL's password must escape); key/value form: password=secret or
# password='a b' (the value ends at whitespace). What follows the value stays as it was, and so does
# the punctuation that ends a sentence around the DSN ("at <dsn>: reason", "(<dsn>)"): a run of
# ) : ; , . just before whitespace or the end is taken as that separator, not as the password's end.
_SEPARATOR = r"(?=[):;,.]*(?:\s|$))"
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&\s]*?)(?=&|[):;,.]*(?:\s|$))", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"((?<![?&\w])password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+?" + _SEPARATOR + ")",
                          re.IGNORECASE)
REDACTED = "***"
URL_SCHEMES = ("postgresql://", "postgres://")


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


def check_dsn_scheme(dsn: str, key: str, env_var: str, *, url_only: bool = False) -> None:
    """An IcurtError when `dsn` (config key `key`, e.g. 'db.dsn') is a URL of another scheme than
    postgresql:// or postgres:// (or, with `url_only`, not a URL); "" and libpq key=value pass."""
    if not dsn or dsn.startswith(URL_SCHEMES) or ("://" not in dsn and not url_only):
        return
    section, name = key.split(".")
    kind = "a postgresql:// URL" if url_only else "a postgresql:// URL or libpq key=value string"
    raise IcurtError(f"config key '{key}' must be {kind}, got {redact_dsn(dsn)}; point {env_var} or "
                     f"[{section}].{name} at PostgreSQL, or leave it empty")
