"""Where the cluster is and how to authenticate, checked when given; and the redaction of secrets.

`Connection` refuses, naming the option, what could only fail later: a URL that is not http(s)
with a host and a valid port, an Elastic Cloud ID that does not decode, a CA certificate, client
certificate or key that cannot be read, a fingerprint that is not SHA-256, a malformed header.
It takes what elasticsearch-py takes: a Cloud ID, an API key encoded or as `id:key`, TLS by CA
file, inline CA data or a pinned certificate fingerprint, a client certificate (mTLS), extra
headers. `Redactor` replaces each secret value a run knows (the credentials in every form a
request carries them, the secrets the requests carry) by `(sensitive)` in text that came from a
server (DESIGN.md §9).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from reconciler import __version__
from reconciler.model import parse_duration
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
            self._pattern = re.compile("|".join(map(_as_pattern, ordered)))
        return self._pattern.sub(REDACTED, text)


# A value this short is redacted only where it stands alone: `x` is not cut out of `max_tokens`,
# nor `4` out of `400`, while `api_key: x` still shows `api_key: (sensitive)`.
_SHORT = 8


def _as_pattern(value: str) -> str:
    if len(value) >= _SHORT:
        return re.escape(value)
    return rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])"


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


def encoded_api_key(api_key: str) -> str:
    """The key sent in `Authorization: ApiKey`: `id:key` (the pair Elasticsearch's create-API-key
    answer gives as `id` and `api_key`) is encoded as elasticsearch-py encodes a pair, base64 of
    `id:key`; the `encoded` form (which base64 never writes with a `:`) is sent as it is."""
    key = api_key.strip()
    if ":" not in key:
        return key
    key_id, _, secret = key.partition(":")
    if not key_id or not secret:
        raise ValueError("--api-key: give the encoded key, or ID:KEY with both parts")
    return base64.b64encode(key.encode()).decode("ascii")


def cloud_url(cloud_id: str) -> str:
    """The Elasticsearch URL of an Elastic Cloud ID, decoded as elasticsearch-py decodes one
    (elastic-transport's `client_utils.parse_cloud_id` and elasticsearch's
    `cloud_id_to_node_configs`): `NAME:BASE64`, BASE64 encoding `HOST[:PORT]$ES_UUID$KIBANA_UUID`;
    the URL is `https://ES_UUID.HOST:PORT`, port 443 unless HOST names one."""
    malformed = "--cloud-id: not an Elastic Cloud ID (NAME:BASE64, as the deployment's page shows it)"
    _, _, encoded = cloud_id.strip().partition(":")
    try:
        parts = binascii.a2b_base64(encoded.encode("ascii")).decode("ascii").split("$")
        host, port = parts[0], 443
        if not host:
            raise ValueError(malformed)
        if ":" in host:
            host, _, port_text = host.rpartition(":")
            port = int(port_text)
    except (ValueError, UnicodeError):
        raise ValueError(malformed) from None
    es_uuid = parts[1] if len(parts) > 1 else ""
    if not es_uuid:
        raise ValueError("--cloud-id: it names no Elasticsearch cluster (only a Kibana)")
    url = f"https://{es_uuid}.{host}:{port}"
    try:
        _check_url(url)
    except ValueError as error:
        raise ValueError(f"--cloud-id: decodes to {error}") from None
    return url


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


# -- headers, timeouts, fingerprints -----------------------------------------------------------

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 §5.6.2)
# Set by the client itself: another value would break the exchange.
_RESERVED = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})
# A header so named carries a credential: its value is redacted as the credentials are.
_CREDENTIAL = re.compile(r"auth|token|key|secret|pass|cookie|session|credential|signature|jwt", re.I)


def parse_headers(texts: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`Name: value` texts (--header) as (name, value) pairs; a message never shows a value."""
    headers = []
    for text in texts:
        name, colon, value = text.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not _TOKEN.fullmatch(name):
            shown = name if _TOKEN.fullmatch(name) else "…"
            raise ValueError(f"--header {shown!r}: give 'Name: value'")
        if name.lower() in _RESERVED:
            raise ValueError(f"--header {name!r}: the tool sets this header itself")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"--header {name!r}: the value holds a line break")
        headers.append((name, value))
    return tuple(headers)


def seconds(text: str, option: str) -> float:
    """A positive duration: `30s`, `2m`, or a number of seconds as elasticsearch-py takes it."""
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text)
        except ValueError as error:
            raise ValueError(f"{option} {text}: {error}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{option} {text}: give a duration above zero, such as 30s")
    return value


def sha256_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lower-case hex digits, from hex with or without
    colons (as `openssl x509 -fingerprint -sha256` and Elasticsearch's first start print it)."""
    digits = text.strip().replace(":", "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digits):
        raise ValueError("--ca-fingerprint: give a SHA-256 fingerprint, 64 hex digits (colons allowed)")
    return digits


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def environment_proxy(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy a URL goes through, given the environment's (`urllib.request.getproxies_environment`),
    as curl, requests and httpx's `trust_env` choose it: HTTPS_PROXY or HTTP_PROXY by the URL's
    scheme, else ALL_PROXY; none for a host NO_PROXY names (`*`: every host; a domain, with or
    without a leading dot: it and its subdomains; `HOST:PORT`: that port only)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if _bypassed((parts.hostname or "").lower(), port, proxies.get("no", "")):
        return None
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        name, _, only_port = entry.partition(":") if entry.count(":") == 1 else (entry, "", "")
        name = name.lstrip(".").strip("[]")
        named = entry == "*" or (name and (host == name or host.endswith("." + name)))
        if named and only_port in ("", str(port)):
            return True
    return False


def proxy_secrets(proxies: Iterable[str | None]) -> set[str]:
    """The passwords proxy URLs hold (`http://user:pw@proxy:3128`): redacted like the credentials."""
    found = set()
    for proxy in proxies:
        password = urlsplit(proxy).password if proxy else None
        if password:
            found |= {password, unquote(password)}
    return found


class ChainReader(ssl.SSLObject):
    """A TLS handshake that records the certificates the server sent on its context, then stops it:
    nothing is sent over it (the client's probe for --ca-fingerprint)."""

    def do_handshake(self) -> None:
        super().do_handshake()
        self.context.chain_seen = peer_chain(self)  # type: ignore[attr-defined]
        raise ssl.SSLError("certificates read: the probe sends no request")


def peer_chain(tls: ssl.SSLObject) -> list[bytes]:
    """The certificates the server sent (DER), its own first."""
    public = getattr(tls, "get_unverified_chain", None)  # Python 3.13
    if public is not None:
        return [bytes(cert) for cert in public()]
    inner = getattr(tls, "_sslobj", None)  # 3.10 to 3.12: the private API elastic-transport uses too
    if inner is not None and hasattr(inner, "get_unverified_chain"):
        der = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
        return [cert.public_bytes(der) for cert in inner.get_unverified_chain()]
    own = tls.getpeercert(binary_form=True)
    return [own] if own else []


def _no_password() -> str:
    raise ValueError("the key is encrypted: give it unencrypted")


def _context(*, cafile: str | None = None, cadata: str | None = None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile, cadata=cadata)


@dataclass(frozen=True)
class Connection:
    """Where the cluster is and how to authenticate (DESIGN.md §4)."""

    urls: tuple[str, ...] = (DEFAULT_URL,)
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_cert: str | None = None
    ca_data: str | None = None
    ca_fingerprint: str | None = None  # SHA-256 of a certificate the server sends: pinned
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool = False
    timeout: float = 30.0
    extra_headers: tuple[tuple[str, str], ...] = ()
    # Built once, when the files are checked: loading them again per client costs as much.
    _tls: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = [kind for kind, given in self._auth_given() if given]
        if len(kinds) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(kinds)}")
        if self.username is not None and self.password is None:
            raise ValueError("--username needs --password (or ELASTICSEARCH_PASSWORD)")
        if self.password is not None and self.username is None:
            raise ValueError("--password needs --username (or ELASTICSEARCH_USERNAME)")
        if self.api_key:
            encoded_api_key(self.api_key)
        if not self.urls:
            raise ValueError("no Elasticsearch URL")
        for url in self.urls:
            _check_url(url)
        self._check_tls()

    def _auth_given(self) -> list[tuple[str, object]]:
        header = any(name.lower() == "authorization" for name, _ in self.extra_headers)
        return [
            ("api key", self.api_key),
            ("basic", self.username),
            ("bearer token", self.bearer_token),
            ("an Authorization header", header),
        ]

    def _check_tls(self) -> None:
        trusts = [
            flag
            for flag, given in (
                ("--ca-cert", self.ca_cert),
                ("--ca-data", self.ca_data),
                ("--ca-fingerprint", self.ca_fingerprint),
                ("--insecure", self.insecure),
            )
            if given
        ]
        if len(trusts) > 1:
            raise ValueError(f"give one way to trust the server, not {' and '.join(trusts)}")
        if self.client_key and not self.client_cert:
            raise ValueError("--client-key needs --client-cert")
        if self.ca_fingerprint:
            object.__setattr__(self, "ca_fingerprint", sha256_fingerprint(self.ca_fingerprint))
            plain = [url for url in self.urls if not url.startswith("https:")]
            if plain:
                raise ValueError(f"--ca-fingerprint pins the certificate of https URLs, not {plain[0]}")
        context = None
        if self.ca_cert:
            context = _file_context(self.ca_cert)
        elif self.ca_data:
            context = _data_context(self.ca_data)
        elif self.insecure and self.client_cert:
            context = _unverified()
        if self.client_cert:
            self.load_client_cert(context or ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        object.__setattr__(self, "_tls", context)

    @classmethod
    def from_options(
        cls,
        url: str | None = None,
        *,
        cloud_id: str | None = None,
        request_timeout: str | None = None,
        header: Sequence[str] | None = None,
        **options: Any,
    ) -> Connection:
        """From the command line's options: --url or --cloud-id, a --request-timeout duration,
        --header texts; the rest are the fields'."""
        if cloud_id:
            if url:
                raise ValueError("give --url or --cloud-id, not both (check ELASTICSEARCH_URL)")
            url = cloud_url(cloud_id)
        if request_timeout is not None:
            options["timeout"] = seconds(request_timeout, "--request-timeout")
        return cls.from_urls(url, extra_headers=parse_headers(header or ()), **options)

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
        names = {"api key": "api-key", "basic": "basic", "bearer token": "bearer"}
        given = [kind for kind, value in self._auth_given() if value]
        return names.get(given[0], "header") if given else "none"

    def secrets(self) -> set[str]:
        """The credentials' values in every form a request carries them: for redaction."""
        found = {self.password or "", self.bearer_token or ""}
        if self.api_key:
            found |= _api_key_forms(self.api_key) | _api_key_forms(encoded_api_key(self.api_key))
        for name, value in self.headers().items():
            if _CREDENTIAL.search(name):
                found |= {value, value.partition(" ")[2]}
        return {value for value in found if value}

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"reconciler/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"ApiKey {encoded_api_key(self.api_key)}"
        elif self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.username:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        for name, value in self.extra_headers:  # a given header replaces the tool's of that name
            headers = {key: v for key, v in headers.items() if key.lower() != name.lower()}
            headers[name] = value
        return headers

    def verify(self) -> ssl.SSLContext | bool:
        """What the transports verify TLS with: True for the default CA bundle (the client builds
        it, adding the client certificate); with --ca-fingerprint, the client asks `pinned`."""
        if self._tls is not None:
            return self._tls
        return not self.insecure

    def load_client_cert(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """The --client-cert (and --client-key) loaded into `context`, for mTLS."""
        if not self.client_cert:
            return context
        files = f"--client-cert {self.client_cert}" + (
            f" / --client-key {self.client_key}" if self.client_key else ""
        )
        try:
            context.load_cert_chain(self.client_cert, self.client_key, password=_no_password)
        except ssl.SSLError as error:
            reason = error.reason or str(error)
            raise ValueError(f"{files}: not a PEM certificate and its unencrypted key ({reason})") from None
        except OSError as error:
            raise ValueError(f"{files}: {error.strerror or error}") from None
        except ValueError as error:
            raise ValueError(f"{files}: {error}") from None
        return context

    def probe_context(self) -> ssl.SSLContext:
        """For --ca-fingerprint, the handshake that only reads the certificates the server sends
        (no request is sent over it): they are left on the context as `chain_seen`."""
        context = self.load_client_cert(_unverified())
        context.sslobject_class = ChainReader
        return context

    def pinned_among(self, chain: Sequence[bytes]) -> bytes:
        """The certificate of those a server sent (DER) whose SHA-256 is the --ca-fingerprint."""
        for der in chain:
            if fingerprint_of(der) == self.ca_fingerprint:
                return der
        sent = ", ".join(fingerprint_of(der) for der in chain) or "none"
        raise ValueError(f"no certificate it sends has the --ca-fingerprint (it sends {sent})")

    def pinned(self, anchor: bytes) -> ssl.SSLContext:
        """For --ca-fingerprint: verification as usual, every signature checked, with the pinned
        certificate (the server's own or one of its chain) the one trust anchor, as
        elasticsearch-py's `ssl_assert_fingerprint` takes it; and, as there, no host name check."""
        context = ssl.create_default_context(cadata=anchor)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the anchor need not be a root
        context.check_hostname = False
        return self.load_client_cert(context)


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _file_context(path: str) -> ssl.SSLContext:
    """The TLS context trusting the --ca-cert file; ValueError naming what is wrong with it."""
    try:
        return _context(cafile=path)
    except ssl.SSLError as error:
        raise ValueError(f"--ca-cert {path}: not a PEM certificate ({error.reason or error})") from None
    except OSError as error:
        raise ValueError(f"--ca-cert {path}: {error.strerror or error}") from None


def _data_context(pem: str) -> ssl.SSLContext:
    """The TLS context trusting the --ca-data PEM text (never shown: it is long, if not secret)."""
    try:
        return _context(cadata=pem)
    except (ssl.SSLError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise ValueError(f"--ca-data: not PEM certificate text ({reason})") from None
