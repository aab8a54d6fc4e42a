"""Reading manifest YAML, bounded: documents with the line of every value, or located errors.

YAML is read with libyaml's parser and the 1.2 core schema (`yes` stays a string); duplicate keys
are refused and merge keys (`<<`) work. Manifests are untrusted (DESIGN.md §9), so reading is
bounded before anything else happens:

- a file over `MAX_FILE_BYTES` (1 MiB) is refused before it is parsed;
- a string (key or value) over `MAX_STRING_CHARS` (64 Ki characters) is refused;
- nesting deeper than `MAX_DEPTH` (32 mappings / lists) is refused;
- aliases are allowed (merge keys need them), but a document may build at most `MAX_VALUES`
  (10 000) values once its aliases are expanded: a "billion laughs" stops there at once;
- NaN and infinities (`.nan`, `.inf`, `1e999`) are refused, and integers beyond 64 bits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_STRING_CHARS = 64 * 1024
MAX_DEPTH = 32
MAX_VALUES = 10_000
_LONG = 2**63


@dataclass(frozen=True, order=True)
class ManifestError:
    """One problem, located: `file:line: path: message` (also used for warnings)."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.path}: {self.message}"
            if self.path
            else f"{self.file}:{self.line}: {self.message}"
        )


_BASE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[valid-type, misc]
    """libyaml's parser with the YAML 1.2 core schema's implicit types."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level registry


for _tag, _pattern, _first in (
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+.0123456789"),
    ),
    ("merge", r"<<", ["<"]),
):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(rf"^(?:{_pattern})$"), _first)

_TAG = "tag:yaml.org,2002:"


class _YamlError(Exception):
    def __init__(self, line: int, path: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


@dataclass
class Document:
    """One YAML document of a manifest file, with the line of each value's path."""

    file: str
    line: int
    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    values: int = 0  # values built so far, aliases counted each time they are expanded
    # The file of a path written elsewhere (an overlay's patch, `reconciler.overlays`); else `file`.
    files: dict[str, str] = field(default_factory=dict)

    def line_of(self, path: str) -> int:
        """The line of a path, or of its nearest parent present (a missing key points at its parent)."""
        return self.locate(path)[1]

    def locate(self, path: str) -> tuple[str, int]:
        """The file and line of a path, or of its nearest parent present."""
        while path:
            if path in self.lines:
                return self.files.get(path, self.file), self.lines[path]
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if ("." in path or "[" in path) else ""
        return self.file, self.line


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _scalar(node: yaml.ScalarNode, path: str) -> Any:
    tag, text = node.tag, node.value
    if len(text) > MAX_STRING_CHARS:
        raise _YamlError(_line(node), path, f"a value may be at most {MAX_STRING_CHARS} characters long")
    if tag == _TAG + "str":
        return text
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return text.lower() == "true"
    if tag == _TAG + "int":
        number = int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10) if len(text) < 40 else _LONG
        if not -_LONG <= number < _LONG:
            raise _YamlError(_line(node), path, "an integer must fit in 64 bits")
        return number
    if tag == _TAG + "float":
        value = float("nan") if ".inf" in text.lower() or ".nan" in text.lower() else float(text)
        if not math.isfinite(value):
            raise _YamlError(_line(node), path, "NaN and infinities are not numbers Elasticsearch takes")
        return value
    raise _YamlError(_line(node), "", f"the tag {tag} is not supported")


def _build(node: yaml.Node, path: str, doc: Document, depth: int = 0) -> Any:
    doc.values += 1
    if doc.values > MAX_VALUES:
        raise _YamlError(
            _line(node), path, f"more than {MAX_VALUES} values once aliases are expanded: refused"
        )
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, path)
    if depth >= MAX_DEPTH:
        raise _YamlError(_line(node), path, f"nested more than {MAX_DEPTH} levels deep: refused")
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            item_path = f"{path}[{i}]"
            doc.lines[item_path] = _line(item)
            items.append(_build(item, item_path, doc, depth + 1))
        return items
    assert isinstance(node, yaml.MappingNode)
    return _mapping(node, path, doc, depth)


def _mapping(node: yaml.MappingNode, path: str, doc: Document, depth: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    merged: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _TAG + "merge":
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                built = _build(source, path, doc, depth + 1)
                if not isinstance(built, dict):
                    raise _YamlError(_line(key_node), path, "a merge key (<<) needs a mapping")
                merged = {**built, **merged}
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            raise _YamlError(_line(key_node), path, "keys must be plain strings")
        key, line = str(key_node.value), _line(key_node)
        if len(key) > MAX_STRING_CHARS:
            raise _YamlError(line, path, f"a key may be at most {MAX_STRING_CHARS} characters long")
        key_path = f"{path}.{key}" if path else key
        if key in first_line:
            raise _YamlError(line, key_path, f"duplicate key (first at line {first_line[key]})")
        first_line[key] = line
        doc.lines[key_path] = line
        result[key] = _build(value_node, key_path, doc, depth + 1)
    return {**merged, **result}


def _read_text(path: Path) -> str:
    """The file's text, refused (ValueError) beyond MAX_FILE_BYTES without reading further."""
    with path.open("rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the file is larger than {MAX_FILE_BYTES // 1024} KiB: refused")
    return data.decode("utf-8")


def read_documents(path: Path, display: str) -> Iterator[Document | ManifestError]:
    """Each non-empty document of a file, or the located errors that stop reading it."""
    try:
        text = _read_text(path)
    except (OSError, UnicodeDecodeError) as error:
        yield ManifestError(display, 1, "", f"cannot read the file: {error}")
        return
    except ValueError as error:
        yield ManifestError(display, 1, "", str(error))
        return
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = Document(display, _line(node), None)
            try:
                doc.data = _build(node, "", doc)
            except _YamlError as error:
                yield ManifestError(display, error.line, error.path, error.message)
                continue
            if doc.data is not None:
                yield doc
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(str(part) for part in (error.context, error.problem) if part)
        yield ManifestError(display, line, "", f"YAML syntax error: {problem}")
    finally:
        loader.dispose()


# -- writing manifests (import) ----------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Quotes exactly the strings a YAML 1.2 reader would take for something else (0e0, true, ~)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level registry


_Dumper.yaml_implicit_resolvers = dict(_Loader.yaml_implicit_resolvers)


def dump_manifest(manifest: Mapping[str, Any], comment: str = "") -> str:
    """One manifest as YAML, keys in the order given, readable back with the 1.2 core schema."""
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + yaml.dump(
        dict(manifest), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
