"""Which data directory: --data-dir, else $QD_BLUESKY_DATA, else the per-user directory."""

from __future__ import annotations

import sys

import pytest

from qd_bluesky.catalog import CatalogError, DataLayout, default_data_dir, resolve_data_dir


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("QD_BLUESKY_DATA", raising=False)
    return tmp_path / "home"


def test_explicit_beats_environment_beats_default(home, tmp_path, monkeypatch):
    assert resolve_data_dir() == home / ".local" / "share" / "qd-bluesky"
    monkeypatch.setenv("QD_BLUESKY_DATA", str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir("") == tmp_path / "from-env"  # an empty --data-dir is no choice
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_user_and_relative_paths_become_absolute(home, tmp_path, monkeypatch):
    assert resolve_data_dir("~/qd") == home / "qd"
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("rel/data") == tmp_path / "rel" / "data"
    monkeypatch.setenv("QD_BLUESKY_DATA", "")  # set but empty: the default applies
    assert resolve_data_dir() == default_data_dir()


@pytest.mark.skipif(sys.platform != "linux", reason="XDG is the Linux convention")
def test_xdg_data_home_is_honoured(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "qd-bluesky"


@pytest.mark.skipif(sys.platform != "linux", reason="XDG is the Linux convention")
def test_fallback_without_platformdirs(home, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # import platformdirs fails
    assert default_data_dir() == home / ".local" / "share" / "qd-bluesky"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # XDG: relative paths are invalid
    assert default_data_dir() == home / ".local" / "share" / "qd-bluesky"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "qd-bluesky"


def test_a_file_is_not_a_data_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CatalogError, match="is not a directory"):
        resolve_data_dir(tmp_path / "file")


def test_layout(tmp_path):
    layout = DataLayout(tmp_path / "d")
    layout.create()
    assert sorted(p.name for p in layout.root.iterdir()) == ["arrays", "photons", "reports"]
    assert layout.catalog_db == tmp_path / "d" / "catalog.db"
    assert layout.tables == tmp_path / "d" / "tables.sqlite"
