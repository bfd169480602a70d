"""The sweeps shipped with the suite, as package data (``vae-bench run default``).

``datasets.yaml`` here is the repository's top-level file (a link), so the installed
package falls back to the same named datasets as a checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DATASETS_FILE = "datasets.yaml"


def directory() -> Path:
    """Where the shipped files lie (the package folder: installs are never zipped)."""
    return Path(str(files(__name__)))


def shipped() -> dict[str, Path]:
    """Every shipped sweep by name: ``default``, ``papers/wf-vae-table1``, ..."""
    root = directory()
    return {
        path.relative_to(root).with_suffix("").as_posix(): path
        for path in sorted(root.rglob("*.yaml"))
        if path.name != DATASETS_FILE
    }


def datasets_file() -> Path | None:
    """The default datasets file shipped with the package, if present."""
    path = directory() / DATASETS_FILE
    return path if path.is_file() else None
