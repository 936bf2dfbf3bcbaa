"""Process secrets: configured, or generated once into <data_dir>/secrets (0600), never a built-in default."""

from __future__ import annotations

import stat

import pytest

from cynode.errors import ConfigError
from cynode.keys import load_or_create


def test_generated_once_then_reused_with_owner_only_mode(tmp_path) -> None:
    first = load_or_create(tmp_path, "jwt_secret", None)
    assert len(first) >= 32
    path = tmp_path / "secrets" / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create(tmp_path, "jwt_secret", None) == first
    assert load_or_create(tmp_path, "other", None) != first


def test_configured_values_must_be_long_enough(tmp_path) -> None:
    assert load_or_create(tmp_path, "k", "x" * 32) == b"x" * 32
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_or_create(tmp_path, "k", "short")
    assert not (tmp_path / "secrets").exists()


def test_a_short_or_unreadable_file_stops_startup(tmp_path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "k").write_text("tiny")
    with pytest.raises(ConfigError, match="fewer than 32 bytes"):
        load_or_create(tmp_path, "k", None)
    (tmp_path / "secrets" / "d").mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError, match="cannot read or create"):
        load_or_create(tmp_path, "d", None)
