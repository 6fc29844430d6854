"""Where the data live: the data directory and its layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._errors import CatalogError

#: Environment variable naming the data directory when ``--data-dir`` is not given.
DATA_DIR_ENV = "QD_BLUESKY_DATA"

_APP_NAME = "qd-bluesky"


def default_data_dir() -> Path:
    """The per-user data directory: ``platformdirs`` when installed, else XDG.

    On Linux both give ``$XDG_DATA_HOME/qd-bluesky``, by default ``~/.local/share/qd-bluesky``.
    """
    try:
        import platformdirs
    except ImportError:  # platformdirs comes with tiled; keep a fallback all the same
        base = os.environ.get("XDG_DATA_HOME") or ""
        # XDG: a relative XDG_DATA_HOME is invalid and must be ignored.
        root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"
        return root / _APP_NAME
    return Path(platformdirs.user_data_dir(_APP_NAME, appauthor=False))


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$QD_BLUESKY_DATA``, else the per-user default.

    Parameters
    ----------
    data_dir
        An explicit directory (``--data-dir``); ``~`` is expanded.

    Returns
    -------
    pathlib.Path
        An absolute path, symlinks resolved (Tiled compares the photon file URIs with its
        readable storage literally). The directory is not created here.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or default_data_dir()
    path = Path(data_dir).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise CatalogError(f"data directory {path} exists and is not a directory")
    return path


@dataclass(frozen=True)
class DataLayout:
    """The files and folders inside a data directory.

    ``catalog.db``
        the SQLite Tiled catalog (run metadata, stream structure, asset references);
    ``tables.sqlite``
        Tiled's writable tabular storage (the event streams: bias steps, readbacks, results);
    ``arrays/``
        Tiled's writable file storage (Zarr), used for array readings of more than 16 elements;
    ``photons/``
        photon HDF5 files written by the TCSPC IOC; Tiled may read them (readable storage);
    ``reports/``
        figures and summaries.
    """

    root: Path

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.db"

    @property
    def tables(self) -> Path:
        return self.root / "tables.sqlite"

    @property
    def arrays(self) -> Path:
        return self.root / "arrays"

    @property
    def photons(self) -> Path:
        return self.root / "photons"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def create(self) -> None:
        """Create the directory and its sub-folders (the databases are created by Tiled)."""
        try:
            for folder in (self.root, self.arrays, self.photons, self.reports):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create data directory {self.root}: {exc}") from None
