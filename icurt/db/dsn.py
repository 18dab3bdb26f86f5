"""The old home of icurt/dsn.py (DSN parsing and password redaction), which now lives below the
config; kept so `from icurt.db.dsn import …` still works."""

from icurt.dsn import (  # noqa: F401
    MIN_REMEMBERED, REDACTED, URL_SCHEMES, RedactingFilter, check_dsn_scheme, dsn_passwords, libpq_dsn,
    redact_dsn, remember_passwords, split_url,
)
