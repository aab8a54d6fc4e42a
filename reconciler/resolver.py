"""Resolving `${NAME}` and `${file:PATH}` references: the one module that reads secrets' values.

`${NAME}` reads the environment variable NAME; `${file:PATH}` reads a file (relative to the working
directory) and strips one trailing newline; `$${` is a literal `${`. Errors name the reference,
never a value. The environment and the file reader are injectable, for tests.

`Resolver.offline()` (`validate --offline`: pre-commit, pull requests from forks) checks each
reference's syntax but resolves none: it reads no variable and no file, and every reference stands
for `OFFLINE_VALUE`, a value nothing could be checked against.

Manifests are untrusted (DESIGN.md §9): `${file:PATH}` reads regular files only (a FIFO, a device
such as /dev/zero or a directory is refused before it is opened, and the file is opened
non-blocking), and at most `MAX_FILE_BYTES` (64 KiB) of them.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.sensitive import TOKEN, BadReferenceError, Reference, references

MAX_FILE_BYTES = 64 * 1024
OFFLINE_VALUE = "(not resolved offline)"


def read_secret_file(path: str) -> str:
    """A regular file's text, one trailing newline removed; OSError for anything else or too big."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(0, "not a regular file")
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # swapped since the first look
            raise OSError(0, "not a regular file")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(0, f"larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8").removesuffix("\n")
    except UnicodeDecodeError:
        raise OSError(0, "not UTF-8 text") from None


@dataclass(frozen=True)
class Resolver:
    """Resolves references against an environment and the file system (both injectable for tests)."""

    env: Mapping[str, str] = field(repr=False)  # the process environment holds secrets
    read_file: Callable[[str], str] = read_secret_file
    is_offline: bool = False
    # One read per file and run, however many manifests mount the same secret.
    _files: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def offline(cls) -> Resolver:
        """A resolver that reads nothing: each well-formed reference stands for OFFLINE_VALUE."""
        return cls({}, is_offline=True)

    def value(self, reference: Reference) -> str:
        if self.is_offline:
            return OFFLINE_VALUE
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
