"""Keeping secrets out of logs, errors, reprs and CLI output: one masker for the process.

Every password the workflow's connections and settings hold is registered (`register_secret`)
when the connection is built or the setting read, as written, percent-decoded and
percent-encoded; `redact_text` replaces each of them wherever it appears (a traceback's source
line, a driver's message, a log line, a stored error), then hides what still looks like a
secret by its shape: `scheme://user:password@host` and ODBC `PWD=` values.

URLs are read without `urllib.parse`, whose errors echo the text (`Port could not be cast to
integer value as 'Xq7Kpw'`) and which splits a password holding an unescaped `/ ? #` into the
host and path: the user information runs from `://` to the last `@`.

A connection string is read pair by pair (`redact_connection_string`), so a braced password
holding `;` or `}}` is hidden whole.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus, unquote

_SECRET_KEYS = frozenset({"pwd", "password"})
_PAIR = re.compile(r"\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*?)\s*(?:;|$)")
_NEEDS_BRACES = re.compile(r"[;{}=\s]|^$")
_BRACED = re.compile(r"\{(?:[^}]|\}\})*\}(?=\s*(?:;|$))")
# In free text an unbraced value runs to the next `;`, space or quote; a braced one to its
# closing brace (`}}` is an escaped brace), to the end if unclosed. A registered password is
# hidden whole wherever it is; these shapes catch the ones never registered.
_ODBC_SECRET = re.compile(r"(?i)(?<![a-z0-9])(pwd|password)\s*=\s*(\{(?:[^}]|\}\})*\}?|[^;\s'\"]*)")
# A password in a URL's query (`?password=...`, `&sslpassword=...`), up to the next `&` or `#`.
_QUERY_SECRET = re.compile(r"([?&](?:ssl)?(?:password|passwd|pwd)=)([^&#\s'\"]*)", re.IGNORECASE)
# `scheme://user:` then anything up to the LAST `@` of the word: a password may hold `@ / ? #`.
_URL_SECRET = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*:/{0,2}[^\s/:@'\"]*:)[^\s'\"]*@")
_MIN_SECRET = 4  # shorter values would mask ordinary words all over the logs

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Mask `secret` from now on, as written, percent-decoded and percent-encoded."""
    if not secret:
        return
    forms = {secret, unquote(secret)}
    forms |= {quote(form, safe="") for form in list(forms)} | {quote_plus(f) for f in forms}
    new = {form for form in forms if len(form) >= _MIN_SECRET} - _secrets
    if new:
        global _pattern
        with _lock:
            _secrets.update(new)
            longest_first = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(_bounded(form) for form in longest_first))


def _bounded(form: str) -> str:
    """A secret as a whole word where it starts or ends with a word character: the password
    `123456` must not eat into `1234567`, nor `postgres` into `postgresql://`."""
    head = r"(?<!\w)" if re.match(r"\w", form[0]) else ""
    tail = r"(?!\w)" if re.match(r"\w", form[-1]) else ""
    return f"{head}{re.escape(form)}{tail}"


def register_url(url: str | None) -> None:
    """Register the password a URL holds, if any (`user:password@`, or `?password=` in its
    query, as libpq and others take it)."""
    if url:
        register_secret(url_password(url))
        for match in _QUERY_SECRET.finditer(url):
            register_secret(unquote(match.group(2)))
            register_secret(match.group(2))


def url_password(url: str) -> str | None:
    """The password of `scheme://user:password@host...` as written (None when there is none)."""
    userinfo = _userinfo(url)
    if userinfo is None or ":" not in userinfo:
        return None
    return userinfo.partition(":")[2] or None


def url_user(url: str) -> str | None:
    """The user name of `scheme://user[:password]@host...` as written (None when there is none)."""
    userinfo = _userinfo(url)
    return None if userinfo is None else userinfo.partition(":")[0] or None


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, for logs, errors and reprs."""
    url = _QUERY_SECRET.sub(r"\1***", url)
    userinfo = _userinfo(url)
    if userinfo is None or ":" not in userinfo:
        return url
    scheme, _, rest = url.partition("://")
    host = rest[len(userinfo) + 1 :]
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def _userinfo(url: str) -> str | None:
    _, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    return rest.rpartition("@")[0]


def redact_text(text: str) -> str:
    """`text` with every registered secret, URL password and ODBC `PWD=` value as `***`."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub("***", text)
    text = _URL_SECRET.sub(r"\1***@", text)
    return _ODBC_SECRET.sub(lambda m: f"{m.group(1)}=***", text)


def parse_odbc(connection_string: str) -> list[tuple[str, str]]:
    """Split an ODBC connection string into (key, value) pairs, unescaping `{...}` values."""
    return [(key, value) for key, value, _ in _pairs(connection_string)]


def _pairs(connection_string: str) -> list[tuple[str, str, str]]:
    """(key, value, rest): `rest` is the text from the value on, for a malformed secret."""
    pairs = []
    for match in _PAIR.finditer(connection_string):
        key, value = match.group(1), match.group(2)
        if _BRACED.fullmatch(value):
            value = value[1:-1].replace("}}", "}")
        pairs.append((key, value, connection_string[match.start(2) :]))
    return pairs


def _malformed(rest: str) -> bool:
    """A value that opens a brace it does not close: where it ends is anyone's guess."""
    return rest.startswith("{") and not _BRACED.match(rest)


def odbc_value(value: str) -> str:
    """A connection-string value, wrapped in braces (with `}` doubled) when ODBC needs it."""
    return "{" + value.replace("}", "}}") + "}" if _NEEDS_BRACES.search(value) else value


def secrets_in(connection_string: str) -> list[str]:
    """The PWD/Password values of a connection string (all the rest, when one is malformed)."""
    secrets = []
    for key, value, rest in _pairs(connection_string):
        if key.lower() in _SECRET_KEYS:
            secrets += [value, rest] if _malformed(rest) else [value]
    return [secret for secret in secrets if secret]


def redact_connection_string(connection_string: str) -> str:
    """The connection string with every PWD/Password value replaced by `***`.

    Unlike a regular expression over the raw text, this reads braced values whole, so a
    password holding `;` or `}}` is hidden entirely; after a malformed one, so is the rest.
    """
    fields = []
    for key, value, rest in _pairs(connection_string):
        if key.lower() not in _SECRET_KEYS:
            fields.append(f"{key}={odbc_value(value)}")
            continue
        fields.append(f"{key}=***")
        if _malformed(rest):
            break
    return ";".join(fields)
