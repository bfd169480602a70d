"""Putting a run directory back in order after a crash, before a rerun resumes it.

Part files are written atomically (temporary file, fsync, rename), so a killed process
leaves at most stray temporary files. A power loss on a file system that reorders
writes, or a copy cut short, can still leave a part file truncated; such a part would
be read as fewer rows without any error. :func:`recover` removes the temporary files,
sets damaged parts aside (``*.damaged``) so that their cells run again, and rewrites
the merged CSVs from the intact parts.
"""

from __future__ import annotations

from vae_bench.results import TABLES, RunStore, csv_damage

TEMP_GLOB = ".*.tmp"  # the names atomic_write_text gives its temporary files


def recover(store: RunStore) -> list[str]:
    """Clean ``store`` after a crash; returns one note per thing repaired."""
    notes: list[str] = []
    for directory in (store.root, store.cells_dir):
        for temp in sorted(directory.glob(TEMP_GLOB)) if directory.is_dir() else []:
            temp.unlink(missing_ok=True)
            notes.append(f"removed the unfinished temporary file {temp.name}")
    if store.cells_dir.is_dir():
        damaged: dict[str, str] = {}
        for table in TABLES:
            for part in sorted(store.cells_dir.glob(f"*.{table}.csv")):
                problem = csv_damage(part)
                if problem:
                    damaged.setdefault(part.name.split(".")[0], f"{part.name}: {problem}")
        for cell, why in damaged.items():
            for table in TABLES:  # the whole cell runs again, so none of its parts stay
                part = store.part(cell, table)
                if part.exists():
                    part.replace(part.with_name(part.name + ".damaged"))
            notes.append(f"cell {cell} will run again: {why}")
    merged = [t for t in TABLES if (store.root / f"{t}.csv").exists()]
    if notes or any(csv_damage(store.root / f"{t}.csv") for t in merged):
        store.merge()
        notes.append("merged CSVs rewritten from the finished cells")
    return notes
