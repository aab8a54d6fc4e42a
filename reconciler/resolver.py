"""Resolving `${NAME}` and `${file:PATH}` references: the one module that reads secrets' values.

`${NAME}` reads the environment variable NAME; `${file:PATH}` reads a file (relative to the working
directory) and strips one trailing newline; `$${` is a literal `${`. Errors name the reference,
never a value. The environment and the file reader are injectable, for tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.sensitive import TOKEN, BadReferenceError, Reference, references


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

        return TOKEN.sub(replace, text)
