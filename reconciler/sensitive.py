"""Secrets: the `${NAME}` / `${file:PATH}` references of manifests, and a type that never shows its value.

A resolved secret lives only in a `Secret`: its repr, str and format print `(sensitive)`, it refuses
to be pickled, and json cannot serialise it. `digest` is the one place that turns a secret into
what the state may keep: a salted HMAC-SHA256.

References: `${NAME}` names the environment variable NAME; `${file:PATH}` a file (relative to the
working directory); `$${` writes a literal `${` (for the placeholders of the `custom` service's
templates). This module only parses them: reading their values is `reconciler.resolver`'s job.
Errors name the reference, never a value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

REDACTED = "(sensitive)"
REDACTED_CHANGED = "(sensitive, changed)"
TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Secret:
    """A secret value that does not show itself: reveal() is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._value.encode()).digest())

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not pickled")


def digest(secret: Secret, salt: str) -> str:
    """What the state keeps of a secret: tells a rotation apart, reveals nothing."""
    # One-shot, in C: a plan takes one per secret of every endpoint.
    mac = hmac.digest(salt.encode(), secret.reveal().encode(), "sha256")
    return f"hmac-sha256:{mac.hex()}"


@dataclass(frozen=True)
class Reference:
    """One `${...}` in a manifest value."""

    text: str  # as written, e.g. ${ANTHROPIC_API_KEY}
    kind: str  # "env" or "file"
    target: str  # the variable name or the file path


class BadReferenceError(Exception):
    """A reference that cannot be resolved; the message names it, never a value."""


def references(text: str) -> list[Reference]:
    """The references in a string (escaped `$${` excluded); raises BadReferenceError on a malformed one."""
    found = []
    for match in TOKEN.finditer(text):
        if match[0] == "$${":
            continue
        inner = match[1]
        if inner.startswith("file:") and inner[5:]:
            found.append(Reference(match[0], "file", inner[5:]))
        elif _ENV_NAME.fullmatch(inner):
            found.append(Reference(match[0], "env", inner))
        else:
            raise BadReferenceError(
                f"{match[0]} is not a reference: write ${{ENV_VAR}} or ${{file:PATH}} ($${{ for a literal ${{)"
            )
    return found


def is_single_reference(text: object) -> bool:
    """Whether the value is exactly one well-formed `${...}` reference (a malformed one is not)."""
    if not isinstance(text, str):
        return False
    try:
        refs = references(text)
    except BadReferenceError:
        return False
    return len(refs) == 1 and refs[0].text == text


def masked(settings: Mapping[str, Any], digests: Mapping[str, str], salt: str) -> dict[str, Any]:
    """What the server echoes of service_settings, fit to show: the value at each secret path
    (`key` or `key.inner`) it holds becomes `(sensitive)` when its digest is the recorded one and
    `(sensitive, changed)` when not (a referenced `model_id` comes back from GET /_inference)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in settings.items()}
    for path, recorded in digests.items():
        top, _, inner = path.partition(".")
        holder = out.get(top) if inner else out
        key = inner or top
        if isinstance(holder, dict) and key in holder:
            same = digest(Secret(str(holder[key])), salt) == recorded
            holder[key] = REDACTED if same else REDACTED_CHANGED
    return out
