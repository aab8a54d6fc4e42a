"""Where the cluster is and how to authenticate, checked when given; and the redaction of secrets.

`Connection` refuses, naming the option, what could only fail later: a URL that is not http(s)
with a host and a valid port, a CA certificate that cannot be read. `Redactor` replaces each
secret value a run knows (the credentials in every form a request carries them, the secrets the
requests carry) by `(sensitive)` in text that came from a server (DESIGN.md §9).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from reconciler import __version__
from reconciler.sensitive import REDACTED

DEFAULT_URL = "http://localhost:9200"


class Redactor:
    """The secret values a run knows, each replaced by `(sensitive)` in the text it is given.

    A value is also looked for as JSON and URL encoding would write it, since servers echo requests
    in those forms; the longest values are replaced first, so that no part of one is left showing."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        new = {form for value in values if value for form in _written_forms(value)} - self._values
        if new:  # the pattern is made again only when a value is new (a body's secret is sent often)
            self._values |= new
            self._pattern = None

    def __call__(self, text: str) -> str:
        if not self._values:
            return text
        if self._pattern is None:
            ordered = sorted(self._values, key=lambda value: (-len(value), value))
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
        return self._pattern.sub(REDACTED, text)


def _written_forms(value: str) -> set[str]:
    return {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
    }


def _api_key_forms(api_key: str) -> set[str]:
    """An API key as given, encoded (base64 of `id:key`) and decoded, and its key part."""
    forms = {api_key}
    try:
        decoded = base64.b64decode(api_key, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = api_key
    if ":" in decoded:
        forms |= {decoded, decoded.partition(":")[2], base64.b64encode(decoded.encode()).decode()}
    return forms


_SCHEMES = ("http", "https")
_USERINFO = re.compile(r"//.*@")  # to the last @: a password may hold a / (or an unescaped @)


def _shown_url(url: str) -> str:
    """A URL for a message: without any user or password it holds."""
    return _USERINFO.sub("//", url)


def _check_url(url: str) -> None:
    """ValueError naming what is wrong with an Elasticsearch URL (http or https, a host, a port)."""
    shown = _shown_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as error:  # an unclosed [ of an IPv6 address
        raise ValueError(f"--url {shown}: {error}") from None
    try:
        port = parts.port
    except ValueError:  # its text would echo the port as written
        raise ValueError(f"--url {shown}: the port is not a number from 1 to 65535") from None
    if parts.scheme not in _SCHEMES:
        what = f"the scheme {parts.scheme}://" if parts.scheme and "//" in url else "no http:// or https://"
        raise ValueError(f"--url {shown}: {what} (give http://HOST:PORT or https://HOST:PORT)")
    if not parts.hostname:
        raise ValueError(f"--url {shown}: no host")
    if port == 0:
        raise ValueError(f"--url {shown}: the port is not a number from 1 to 65535")


def _ca_context(path: str) -> ssl.SSLContext:
    """The TLS context trusting the --ca-cert file; ValueError naming what is wrong with it."""
    try:
        return ssl.create_default_context(cafile=path)
    except ssl.SSLError as error:
        raise ValueError(f"--ca-cert {path}: not a PEM certificate ({error.reason or error})") from None
    except OSError as error:
        raise ValueError(f"--ca-cert {path}: {error.strerror or error}") from None


@dataclass(frozen=True)
class Connection:
    """Where the cluster is and how to authenticate (DESIGN.md §4)."""

    urls: tuple[str, ...] = (DEFAULT_URL,)
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_cert: str | None = None
    insecure: bool = False
    timeout: float = 30.0
    # Built once, when the CA file is checked: loading it again per client costs as much.
    _ca: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = [
            k
            for k, v in (
                ("api key", self.api_key),
                ("basic", self.username),
                ("bearer token", self.bearer_token),
            )
            if v
        ]
        if len(kinds) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(kinds)}")
        if self.username is not None and self.password is None:
            raise ValueError("--username needs --password (or ELASTICSEARCH_PASSWORD)")
        if not self.urls:
            raise ValueError("no Elasticsearch URL")
        for url in self.urls:
            _check_url(url)
        if self.ca_cert:
            object.__setattr__(self, "_ca", _ca_context(self.ca_cert))

    @classmethod
    def from_urls(cls, text: str | None, **options: Any) -> Connection:
        """From --url: comma-separated URLs. Credentials in a URL (`https://user:pw@host`) become
        basic auth, so they are sent as a header and the URLs kept, printed and logged hold none."""
        urls, users = [], set()
        for raw in (text or DEFAULT_URL).split(","):
            url = raw.strip().rstrip("/")
            if not url:
                continue
            _check_url(url)
            parts = urlsplit(url)
            if parts.username is not None:
                users.add((unquote(parts.username), unquote(parts.password or "")))
                url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            urls.append(url)
        if len(users) > 1:
            raise ValueError("the URLs name different users: give one --username and --password")
        if users:
            if options.get("username") or options.get("password"):
                raise ValueError("give the user in the URL or as --username/--password, not both")
            options["username"], options["password"] = users.pop()
        return cls(urls=tuple(urls), **options)

    def __repr__(self) -> str:
        # Credentials never show: this object reaches logs and exceptions.
        return f"Connection(urls={self.urls!r}, auth={self.auth_kind()}, insecure={self.insecure})"

    def auth_kind(self) -> str:
        if self.api_key:
            return "api-key"
        if self.username:
            return "basic"
        if self.bearer_token:
            return "bearer"
        return "none"

    def secrets(self) -> set[str]:
        """The credentials' values in every form a request carries them: for redaction."""
        found = {self.password or "", self.bearer_token or ""}
        if self.api_key:
            found |= _api_key_forms(self.api_key)
        authorization = self.headers().get("Authorization", "")
        found |= {authorization, authorization.partition(" ")[2]}
        return {value for value in found if value}

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"reconciler/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"ApiKey {self.api_key}"
        elif self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.username:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def verify(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        return self._ca if self._ca is not None else True
