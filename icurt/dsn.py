"""DSN handling that never lets a password out (below the config, which checks and remembers the DSNs).

Two layers: patterns that mask a password in any DSN shape (a URL of any scheme, a URL without its
scheme, a URL's `?password=`, libpq key=value, libpq's echo of a misparsed host or port), and the
exact passwords of the configured DSNs (remembered when the config loads, in every encoding), masked
wherever they appear. `libpq_dsn` hands libpq a URL whose user and password are percent-encoded, so
libpq never misreads a password holding `@`, `:` or `/` as the host, port or database (and never
echoes part of it in its messages).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, quote_plus, unquote

from icurt.errors import IcurtError

REDACTED = "***"
URL_SCHEMES = ("postgresql://", "postgres://")
MIN_REMEMBERED = 4   # shorter passwords are masked by the patterns only (masking "pw" everywhere garbles text)

# What follows a URL's userinfo: the host (list), then an optional path and query, to the end of the
# token. The userinfo ends at the first "@" that such a remainder follows, so a password may hold "@".
_AFTER_AT = r"(?=[^@/?\s]*(?:/[^@?\s]*)?(?:\?\S*)?(?:\s|$))"
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#:]*?:)(\S*?)(@)" + _AFTER_AT)
# user:password@host... without a scheme, as a token of its own (start, space, quote, bracket, "=")
_BARE_PASSWORD = re.compile(r"((?:^|(?<=[\s\"'(<=,]))[\w.~%+-]+:)(?!//)(\S*?)(@)(?=[\w.\[%-])" + _AFTER_AT)
# The value ends at "&" (which a URL's password must escape).
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&\s]*?)(?=&|[):;,.\"']*(?:\s|$))", re.IGNORECASE)
# password=secret or password='a b' (the value ends at whitespace). The punctuation that ends a
# sentence around the DSN ("at <dsn>: reason", "(<dsn>)") is taken as that separator.
_KV_PASSWORD = re.compile(r"((?<![?&\w])password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+?(?=[):;,.]*(?:\s|$)))",
                          re.IGNORECASE)
# libpq's echo of a DSN it misread: a host name holding "@" (what precedes it was the password's
# tail) and a port that is not a number (the password's head, when it holds "/").
_ECHOED_HOST = re.compile(r'(host name ")([^"]*)(@)')
_ECHOED_PORT = re.compile(r'(invalid integer value ")([^"]*)(" for connection option "port")|'
                          r'(invalid port number: ")([^"]*)(")')

_PASSWORDS: set[str] = set()   # every form of the configured passwords (remember_passwords)


def redact_dsn(text: str) -> str:
    """`text` with every DSN password replaced by ***; safe for logs, errors and snapshots."""
    if not text:
        return text
    for secret in sorted(_PASSWORDS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + (REDACTED if m.group(2) else "") + m.group(3), text)
    text = _BARE_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    text = _QUERY_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    text = _ECHOED_HOST.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    return _ECHOED_PORT.sub(lambda m: (m.group(1) or m.group(4)) + REDACTED + (m.group(3) or m.group(6)), text)


def remember_passwords(*dsns: str) -> None:
    """Mask the passwords of these DSNs wherever they appear from now on (as written, decoded and
    percent-encoded); passwords under MIN_REMEMBERED characters are left to the patterns."""
    for dsn in dsns:
        for password in dsn_passwords(dsn):
            decoded = unquote(password)
            forms = {password, decoded, quote(decoded, safe=""), quote(decoded), quote_plus(decoded)}
            _PASSWORDS.update(form for form in forms if len(form) >= MIN_REMEMBERED)


def dsn_passwords(dsn: str) -> list[str]:
    """The passwords written in `dsn` (URL userinfo, URL query, libpq key=value), as written."""
    if not dsn:
        return []
    found = []
    url = split_url(dsn)
    if url is not None and url[2] is not None:
        found.append(url[2])
    found += [m.group(2) for m in _QUERY_PASSWORD.finditer(dsn)]
    if url is None:
        from psycopg2.extensions import parse_dsn

        try:
            found.append(parse_dsn(dsn).get("password", ""))
        except Exception:   # not libpq's syntax either: the patterns are all we have
            found += [m.group(2).strip("'") for m in _KV_PASSWORD.finditer(dsn)]
    return [p for p in found if p]


def split_url(dsn: str) -> tuple[str, str, str | None, str] | None:
    """(scheme + "://", user, password or None, "@" + the rest) of a URL-shaped DSN, with or without
    its scheme; None for libpq key=value or a URL without userinfo."""
    match = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*://)?([^\s/?#:]*?)(?::(?!//)(\S*?))?(@)" + _AFTER_AT + r"(\S*)",
                         dsn.strip())
    if match is None or (match.group(1) is None and match.group(3) is None):
        return None
    return match.group(1) or "", match.group(2), match.group(3), "@" + match.group(5)


def libpq_dsn(dsn: str) -> str:
    """`dsn` as libpq should read it: a URL's user and password percent-encoded (libpq decodes them),
    so "@", ":" or "/" in a password stays in the password; key=value strings unchanged."""
    url = split_url(dsn)
    if url is None or not url[0]:
        return dsn
    scheme, user, password, rest = url
    encoded = quote(unquote(user), safe="") + ("" if password is None else ":" + quote(unquote(password), safe=""))
    return scheme + encoded + rest


class RedactingFilter(logging.Filter):
    """A logging filter that redacts DSN passwords from every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_dsn(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:   # a traceback would print it unmasked
            record.exc_text = redact_dsn(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def check_dsn_scheme(dsn: str, key: str, env_var: str, *, url_only: bool = False) -> None:
    """An IcurtError when `dsn` (config key `key`, e.g. 'db.dsn') is a URL of another scheme than
    postgresql:// or postgres://, a URL without its scheme, or (with `url_only`) not a URL; "" and
    libpq key=value pass."""
    if not dsn or dsn.startswith(URL_SCHEMES):
        return
    section, name = key.split(".")
    if "://" not in dsn and split_url(dsn) is not None:
        raise IcurtError(f"config key '{key}' looks like a URL without its scheme ({redact_dsn(dsn)}); write it "
                         f"as postgresql://{redact_dsn(dsn)} in {env_var} or [{section}].{name}")
    if "://" not in dsn and not url_only:
        return
    kind = "a postgresql:// URL" if url_only else "a postgresql:// URL or libpq key=value string"
    raise IcurtError(f"config key '{key}' must be {kind}, got {redact_dsn(dsn)}; point {env_var} or "
                     f"[{section}].{name} at PostgreSQL, or leave it empty")
