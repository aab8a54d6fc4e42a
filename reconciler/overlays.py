"""Overlays: an environment's manifests are the base manifests with its overlay folder's documents.

Each YAML document of an overlay folder (read recursively, like the base) is one of three kinds,
told apart by its first key (it may hold only one of them):

- `patch: ID` and the fields to change: a JSON merge patch (RFC 7386) of the base manifest ID —
  a mapping merges key by key, any other value (a list too) replaces, and `null` removes the key;
- `exclude: [ID, ...]`: these base endpoints are left out of this environment;
- a whole manifest (`inference_id: ...`): an endpoint only this environment has.

Every value keeps its place: a field a patch wrote points at the patch's file and line, the rest
at the base manifest, so validation errors after patching name the file to fix. A patch or an
exclusion of an id the base does not define, two patches of one id, or an overlay manifest whose
id the base already has, are errors located in the overlay. Secrets stay references: nothing here
resolves them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.manifests_yaml import Document, ManifestError, read_documents

KINDS = ("patch", "exclude", "inference_id")


@dataclass
class Shared:
    """What environments read together share (`plan --all-envs`): each base folder is read once,
    each of its documents validated once per version (`manifests.load_documents`), and what the
    planner derives from each manifest taken once per version (`planner.Memo`)."""

    bases: dict[Path, tuple[list[Document | ManifestError], int]] = field(default_factory=dict)
    checked: dict[tuple[int, str, int], Any] = field(default_factory=dict)
    planned: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Layers:
    """The manifests of one environment: the base folder, then its overlay folder (if any)."""

    base: Path
    overlay: Path | None
    environment: str
    shared: Shared | None = field(default=None, compare=False, repr=False)


def yaml_files(root: Path) -> list[Path]:
    """Every `*.yaml` / `*.yml` under root, in sorted order of their relative paths."""
    found = [p for pattern in ("*.yaml", "*.yml") for p in root.rglob(pattern) if p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def compose(layers: Layers) -> tuple[list[Document | ManifestError], int]:
    """The environment's documents (or the located errors reading them), and how many files were read."""
    if not layers.base.is_dir():
        return [ManifestError(str(layers.base), 1, "", "the manifests folder does not exist")], 0
    base, base_files = _base(layers)
    if layers.overlay is None:
        return base, base_files
    if not layers.overlay.is_dir():
        return [ManifestError(str(layers.overlay), 1, "", "the overlay folder does not exist")], 0
    overlay_files = yaml_files(layers.overlay)
    overlay = [item for path in overlay_files for item in read_documents(path, str(path))]
    return apply_overlay(base, overlay), base_files + len(overlay_files)


def _base(layers: Layers) -> tuple[list[Document | ManifestError], int]:
    """The base folder's documents, read once for all the environments that share it. They are
    never changed: a patch makes a new document."""
    if layers.shared is not None and layers.base in layers.shared.bases:
        return layers.shared.bases[layers.base]
    files = yaml_files(layers.base)
    read = [item for path in files for item in read_documents(path, str(path))], len(files)
    if layers.shared is not None:
        layers.shared.bases[layers.base] = read
    return read


def id_of(item: Document | ManifestError) -> str | None:
    """The inference_id a document names, if it names one."""
    if isinstance(item, Document) and isinstance(item.data, dict):
        value = item.data.get("inference_id")
        return value if isinstance(value, str) else None
    return None


class _Overlay:
    """The documents of an overlay folder, sorted by kind, with the errors found sorting them."""

    def __init__(self, base_ids: Mapping[str, Document]) -> None:
        self.base_ids = base_ids
        self.patches: dict[str, Document] = {}
        self.excluded: dict[str, tuple[str, int]] = {}
        self.added: list[Document] = []
        self.errors: list[ManifestError] = []

    def error(self, doc: Document, path: str, message: str) -> None:
        self.errors.append(ManifestError(doc.file, doc.line_of(path), path, message))

    def take(self, doc: Document) -> None:
        data = doc.data
        kinds = [k for k in KINDS if isinstance(data, dict) and k in data]
        if len(kinds) != 1:
            found = " and ".join(kinds) if kinds else "none of them"
            self.error(
                doc, "", f"an overlay document holds one of patch:, exclude: or inference_id: ({found})"
            )
        elif kinds[0] == "patch":
            self._patch(doc)
        elif kinds[0] == "exclude":
            self._exclude(doc)
        elif data["inference_id"] in self.base_ids:
            there = self.base_ids[data["inference_id"]]
            self.error(
                doc,
                "inference_id",
                f"{data['inference_id']} is in the base manifests ({there.file}:{there.line}): "
                f"change it with patch: {data['inference_id']}",
            )
        else:
            self.added.append(doc)

    def _patch(self, doc: Document) -> None:
        target = doc.data["patch"]
        if not isinstance(target, str):
            self.error(doc, "patch", "must be the inference_id of a base manifest")
        elif target not in self.base_ids:
            self.error(doc, "patch", f"no base manifest has the inference_id {target}{_known(self.base_ids)}")
        elif target in self.patches:
            first = self.patches[target]
            self.error(doc, "patch", f"{target} is also patched at {first.file}:{first.line_of('patch')}")
        else:
            self.patches[target] = doc

    def _exclude(self, doc: Document) -> None:
        ids = doc.data["exclude"]
        if len(doc.data) != 1:
            self.error(doc, "", "an exclude: document holds nothing else")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            self.error(doc, "exclude", "must be a list of inference_ids of base manifests")
            return
        for index, inference_id in enumerate(ids):
            path = f"exclude[{index}]"
            if inference_id not in self.base_ids:
                self.error(
                    doc, path, f"no base manifest has the inference_id {inference_id}{_known(self.base_ids)}"
                )
            self.excluded.setdefault(inference_id, (doc.file, doc.line_of(path)))

    def check_conflicts(self) -> None:
        for inference_id, doc in self.patches.items():
            if inference_id in self.excluded:
                file, line = self.excluded[inference_id]
                self.error(
                    doc, "patch", f"{inference_id} is excluded at {file}:{line}: patch it or exclude it"
                )


def _known(ids: Mapping[str, Any]) -> str:
    shown = sorted(ids)[:8]
    more = ", ..." if len(ids) > len(shown) else ""
    return f" (base ids: {', '.join(shown)}{more})" if shown else " (the base has no manifests)"


def apply_overlay(
    base: list[Document | ManifestError], overlay: list[Document | ManifestError]
) -> list[Document | ManifestError]:
    """The base documents patched, excluded and extended by the overlay's; errors for what cannot be."""
    base_ids: dict[str, Document] = {}
    for item in base:
        inference_id = id_of(item)
        if inference_id is not None and isinstance(item, Document):
            base_ids.setdefault(inference_id, item)
    sorted_out = _Overlay(base_ids)
    errors: list[Document | ManifestError] = [item for item in overlay if isinstance(item, ManifestError)]
    for item in overlay:
        if isinstance(item, Document):
            sorted_out.take(item)
    sorted_out.check_conflicts()
    if sorted_out.errors or errors:
        return [*errors, *sorted_out.errors]
    result: list[Document | ManifestError] = []
    for item in base:
        inference_id = id_of(item)
        if inference_id in sorted_out.excluded:
            continue
        patch = sorted_out.patches.get(inference_id) if inference_id is not None else None
        result.append(patched(item, patch) if patch is not None and isinstance(item, Document) else item)
    return [*result, *sorted_out.added]


def patched(base: Document, patch: Document) -> Document:
    """`base` with the merge patch `patch` applied (its `patch:` key aside), each value located."""
    doc = Document(base.file, base.line, None, dict(base.lines), files=dict(base.files))
    changes = {k: v for k, v in patch.data.items() if k != "patch"}
    doc.data = _merge(base.data, changes, "", doc, patch)
    return doc


def _merge(target: Any, changes: Mapping[str, Any], prefix: str, doc: Document, patch: Document) -> Any:
    merged = dict(target) if isinstance(target, dict) else {}
    if not isinstance(target, dict) and prefix:
        _forget(doc, prefix, keep_self=True)
    for key, value in changes.items():
        path = f"{prefix}.{key}" if prefix else key
        if value is None:
            merged.pop(key, None)
            _forget(doc, path)
        elif isinstance(value, dict):
            if not isinstance(merged.get(key), dict):  # a mapping merged into keeps its place
                _forget(doc, path)
                _locate(doc, path, patch)
            merged[key] = _merge(merged.get(key), value, path, doc, patch)
        else:
            _forget(doc, path)
            _locate(doc, path, patch)
            for inner in _subpaths(patch, path):
                _locate(doc, inner, patch)
            merged[key] = value
    return merged


def _locate(doc: Document, path: str, patch: Document) -> None:
    if path in patch.lines:
        doc.lines[path] = patch.lines[path]
        doc.files[path] = patch.files.get(path, patch.file)


def _subpaths(doc: Document, path: str) -> Iterator[str]:
    return (p for p in doc.lines if p.startswith((path + ".", path + "[")))


def _forget(doc: Document, path: str, *, keep_self: bool = False) -> None:
    """Drop the locations of a path (and of everything under it) the patch replaced or removed."""
    for known in [*_subpaths(doc, path), *([] if keep_self else [path])]:
        doc.lines.pop(known, None)
        doc.files.pop(known, None)
