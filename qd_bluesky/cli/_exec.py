"""Hand the process over to another console script (a server that runs in the foreground)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn


def console_script(name: str, package: str) -> str:
    """The path of console script ``name``: beside this Python first, then on ``PATH``.

    Raises
    ------
    FileNotFoundError
        Not installed; the message names the package that brings it.
    """
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install {package}")
    return found


def replace_process(command: Sequence[str], env: Mapping[str, str] | None = None) -> NoReturn:
    """Become ``command``: Ctrl-C and SIGTERM reach it as if it had been run directly, and
    its exit status is the command's."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], list(command), {**os.environ, **(env or {})})
