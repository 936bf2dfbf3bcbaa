"""Instruction bundles (agents.md §2.2): the packaged Markdown per role, or an operator's directory instead."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cynode.config import PmaSettings
from cynode.errors import ConfigError

PACKAGED_ROOT = Path(__file__).resolve().parent / "instructions"
MAX_BUNDLE_BYTES = 256 * 1024
DEFAULT_SKILL_ID = "00000000-0000-4000-8000-000000000001"
DEFAULT_SKILL_NAME = "CyNodeAI interaction"


@dataclass(frozen=True)
class Bundle:
    role: str
    path: Path
    baseline: str  # the 01_* file(s)
    instructions: str  # the other files, joined by a blank line
    files: tuple[str, ...]
    default_skill: str
    default_skill_source: str  # packaged | custom

    @property
    def size(self) -> int:
        return len(self.baseline.encode()) + len(self.instructions.encode())


def _bundle_path(settings: PmaSettings, role: str) -> Path:
    override = settings.instructions_project_manager if role == "project_manager" else \
        settings.instructions_project_analyst
    root = Path(settings.instructions_root).expanduser() if settings.instructions_root else PACKAGED_ROOT
    return Path(override).expanduser().resolve() if override else (root / role).resolve()


def load_bundle(settings: PmaSettings, role: str) -> Bundle:
    """Load all *.md except README.md, sorted by name. Any problem names the path (the CLI exits 2)."""
    path = _bundle_path(settings, role)
    if role == "project_analyst" and path == _bundle_path(settings, "project_manager"):
        raise ConfigError(f"{path}: project_analyst must not load the project_manager bundle")
    if not path.is_dir():
        raise ConfigError(f"{path}: instruction bundle directory not found")
    files = sorted(p for p in path.glob("*.md") if p.name != "README.md")
    if not files:
        raise ConfigError(f"{path}: the instruction bundle has no .md files")
    texts: list[tuple[str, str]] = []
    total = 0
    for f in files:
        try:
            text = f.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{f}: cannot read instruction file ({e})") from None
        total += len(text.encode())
        if total > MAX_BUNDLE_BYTES:
            raise ConfigError(f"{path}: the instruction bundle exceeds 256 KiB")
        texts.append((f.name, text))
    baseline = "\n\n".join(t for n, t in texts if n.startswith("01_"))
    rest = "\n\n".join(t for n, t in texts if not n.startswith("01_"))
    root = Path(settings.instructions_root).expanduser() if settings.instructions_root else PACKAGED_ROOT
    skill_file = root / "default_cynodeai_skill.md"
    source = "custom" if settings.instructions_root and skill_file.is_file() else "packaged"
    if not skill_file.is_file():
        skill_file = PACKAGED_ROOT / "default_cynodeai_skill.md"
    return Bundle(role=role, path=path, baseline=baseline, instructions=rest, files=tuple(n for n, _ in texts),
                  default_skill=skill_file.read_text(encoding="utf-8").strip(), default_skill_source=source)


def resolve_role(flag: str | None, settings_role: str | None) -> str | None:
    """Role precedence for the PMA (agents.md §2.1): flag > config file > env PMA_ROLE."""
    return flag or settings_role or os.environ.get("PMA_ROLE") or None
