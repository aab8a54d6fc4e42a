"""Secrets: the `${NAME}` / `${file:PATH}` references of manifests, and a type that never shows its value.

A resolved secret lives only in a `Secret`: its repr, str and format print `(sensitive)`, it refuses
to be pickled, and json cannot serialise it. `digest` is the one place that turns a secret into
what the state may keep: a salted HMAC-SHA256.

References: `${NAME}` reads the environment variable NAME; `${file:PATH}` reads a file (relative
to the working directory) and strips one trailing newline; `$${` writes a literal `${` (for the
placeholders of the `custom` service's templates). Errors name the reference, never a value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

REDACTED = "(sensitive)"
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
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
    mac = hmac.new(salt.encode(), secret.reveal().encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{mac}"


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
    for match in _TOKEN.finditer(text):
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


def is_single_reference(text: str) -> bool:
    refs = references(text)
    return len(refs) == 1 and refs[0].text == text


def read_secret_file(path: str) -> str:
    text = Path(path).read_text()
    return text.removesuffix("\n")


@dataclass(frozen=True)
class Resolver:
    """Resolves references against an environment and the file system (both injectable for tests)."""

    env: Mapping[str, str] = field(repr=False)  # the process environment holds secrets
    read_file: Callable[[str], str] = read_secret_file
    # One read per file and run, however many manifests mount the same secret.
    _files: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def value(self, reference: Reference) -> str:
        if reference.kind == "env":
            if reference.target not in self.env:
                raise BadReferenceError(
                    f"environment variable {reference.target} is not set (from {reference.text})"
                )
            return self.env[reference.target]
        if reference.target in self._files:
            return self._files[reference.target]
        try:
            text = self._files[reference.target] = self.read_file(reference.target)
            return text
        except OSError as error:
            raise BadReferenceError(
                f"cannot read {reference.target} (from {reference.text}): {error.strerror or type(error).__name__}"
            ) from None

    def resolve(self, text: str) -> str:
        """The string with every reference replaced and every `$${` turned into `${`."""
        references(text)  # raise on malformed ones first

        def replace(match: re.Match[str]) -> str:
            if match[0] == "$${":
                return "${"
            return self.value(references(match[0])[0])

        return _TOKEN.sub(replace, text)
