"""A model registry on disk: content-addressed bundle versions with metadata, and a
promoted pointer.

Layout under the registry root::

    versions/<version>/bundle/     a `abrec.models.bundle.ModelBundle` folder (bundle.json, …)
    versions/<version>/meta.json   what the version is (see `ModelVersion`)
    PROMOTED                       the version to serve (one line), replaced atomically

A version id is the first 16 hex digits of the SHA-256 of the bundle's files
(`bundle_digest`): registering the same bundle twice gives the same version, and a
version's files never change. Registration copies the bundle into a temporary folder
inside the root and renames it into place, so a reader never sees a half-written
version; `promote` writes the pointer to a temporary file and `os.replace`s it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from abrec.data.types import Interactions
from abrec.errors import ConfigError

VERSION_RE = re.compile(r"^[0-9a-f]{16}$")
_DIGITS = 16
PROMOTED = "PROMOTED"
#: Optional file in a bundle folder (`abrec evaluate --save-models` writes it): a JSON
#: object with ``data_fingerprint``, ``config`` and ``metrics``, the defaults of `register`.
PROVENANCE_FILE = "provenance.json"


class ArtifactError(ConfigError):
    """A model registry or one of its versions is missing or invalid (message says which)."""


def bundle_digest(path: str | Path) -> str:
    """SHA-256 (hex) over a bundle folder: every file's relative path and bytes, in sorted
    path order. Two folders with the same files have the same digest."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(8, "big") + rel)
        h.update(f.stat().st_size.to_bytes(8, "big"))
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _array_bytes(a: np.ndarray | None, kind: str) -> bytes:
    if a is None:
        return b"none"
    if kind == "ids":
        return "\x1f".join(str(x) for x in a).encode("utf-8", "surrogatepass")
    return np.ascontiguousarray(np.asarray(a, dtype=kind)).tobytes()


def data_fingerprint(inter: Interactions) -> str:
    """SHA-256 (hex) of training interactions: the user and item id lists, and the rows
    (user index, item index, rating, timestamp) in their stored order."""
    h = hashlib.sha256()
    parts = [
        ("user_ids", _array_bytes(inter.user_ids, "ids")),
        ("item_ids", _array_bytes(inter.item_ids, "ids")),
        ("user_idx", _array_bytes(inter.user_idx, "<i8")),
        ("item_idx", _array_bytes(inter.item_idx, "<i8")),
        ("ratings", _array_bytes(inter.ratings, "<f8")),
        ("timestamps", _array_bytes(inter.timestamps, "<i8")),
    ]
    for name, blob in parts:
        h.update(name.encode() + b"\0" + len(blob).to_bytes(8, "big") + blob)
    return h.hexdigest()


def _git(here: Path, *args: str) -> str | None:
    """stdout of a git command run in ``here``, None when git fails or is absent."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """The abrec version and, when this package's files are tracked in a git checkout, its
    commit and whether the package's sources differ from it (``git_dirty``); both None
    otherwise (e.g. an installed wheel)."""
    from abrec import __version__

    here = Path(__file__).resolve().parent
    commit: str | None = None
    dirty: bool | None = None
    if _git(here, "ls-files", "--error-unmatch", Path(__file__).name) is not None:
        head = (_git(here, "rev-parse", "HEAD") or "").strip()
        if re.fullmatch(r"[0-9a-f]{40}", head):
            commit = head
            status = _git(here, "status", "--porcelain", "--", str(here.parent))
            dirty = None if status is None else bool(status.strip())
    return {"abrec": __version__, "git_commit": commit, "git_dirty": dirty}


def _provenance(bundle: Path) -> dict[str, Any]:
    path = bundle / PROVENANCE_FILE
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return doc


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its id, bundle folder and metadata.

    ``meta`` holds ``version``, ``created_at`` (ISO 8601 UTC), ``models`` (names),
    ``bundle_sha256``, ``size_bytes``, ``data_fingerprint`` (see `data_fingerprint`; None
    when not given), ``config`` and ``metrics`` (JSON objects, {} when not given),
    ``code`` (`code_version` at registration) and ``source`` (the folder registered).
    """

    version: str
    path: Path
    meta: dict[str, Any]

    @property
    def bundle(self) -> Path:
        """The bundle folder to load with `ModelBundle.load`."""
        return self.path / "bundle"

    @property
    def models(self) -> list[str]:
        return list(self.meta.get("models", []))


class ModelRegistry:
    """The registry rooted at ``root`` (created on first registration)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def _versions(self) -> Path:
        return self.root / "versions"

    def register(
        self,
        bundle: str | Path,
        *,
        data_fingerprint: str | None = None,
        config: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Copy a bundle folder into the registry; return its (possibly existing) version.

        Metadata not given is taken from the bundle's `PROVENANCE_FILE` when it has one.

        Raises:
            ArtifactError: when ``bundle`` is not a model bundle folder.
        """
        src = Path(bundle)
        meta_file = src / "bundle.json"
        if not meta_file.is_file():
            raise ArtifactError(f"{src} is not a model bundle (no bundle.json)")
        provenance = _provenance(src)
        if data_fingerprint is None:
            data_fingerprint = provenance.get("data_fingerprint")
        config = config if config is not None else provenance.get("config")
        metrics = metrics if metrics is not None else provenance.get("metrics")
        try:
            models = sorted(json.loads(meta_file.read_text())["models"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{meta_file} is not a valid bundle.json: {exc}") from exc
        digest = bundle_digest(src)
        version = digest[:_DIGITS]
        target = self._versions / version
        if (target / "meta.json").is_file():
            return self.get(version)
        meta: dict[str, Any] = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "models": models,
            "bundle_sha256": digest,
            "size_bytes": sum(p.stat().st_size for p in src.rglob("*") if p.is_file()),
            "data_fingerprint": data_fingerprint,
            "config": config or {},
            "metrics": metrics or {},
            "code": code_version(),
            "source": str(src.resolve()),
        }
        self._versions.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self._versions))
        try:
            shutil.copytree(src, tmp / "bundle")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            try:
                tmp.rename(target)
            except OSError:  # a concurrent registration of the same bundle won
                if not (target / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.get(version)

    def get(self, version: str) -> ModelVersion:
        """A registered version.

        Raises:
            ArtifactError: for a malformed or unknown version id.
        """
        if not VERSION_RE.match(version):
            raise ArtifactError(
                f"{version[:40]!r} is not a model version (16 hex digits, see `abrec models list`)"
            )
        path = self._versions / version
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise ArtifactError(f"no model version {version} in the registry {self.root}")
        return ModelVersion(version, path, json.loads(meta_file.read_text()))

    def list(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        if not self._versions.is_dir():
            return []
        found = [
            self.get(p.name)
            for p in self._versions.iterdir()
            if VERSION_RE.match(p.name) and (p / "meta.json").is_file()
        ]
        return sorted(found, key=lambda v: (str(v.meta.get("created_at", "")), v.version))

    def promote(self, version: str) -> ModelVersion:
        """Make ``version`` the one to serve (atomic pointer replacement).

        Raises:
            ArtifactError: for an unknown version.
        """
        found = self.get(version)
        fd, tmp = tempfile.mkstemp(prefix=".promoted-", dir=self.root)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(version + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / PROMOTED)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return found

    def promoted(self) -> str | None:
        """The promoted version id, None when nothing was promoted."""
        pointer = self.root / PROMOTED
        if not pointer.is_file():
            return None
        version = pointer.read_text().strip()
        if not VERSION_RE.match(version):
            raise ArtifactError(f"{pointer} does not hold a model version; promote one again")
        return version


__all__ = [
    "PROMOTED",
    "PROVENANCE_FILE",
    "ArtifactError",
    "ModelRegistry",
    "ModelVersion",
    "bundle_digest",
    "code_version",
    "data_fingerprint",
]
