"""The results store of one run: tidy CSVs written so that a kill never corrupts them.

Layout of ``reports/<run>/``::

    run.json            the sweep and the environment of the run
    cells/<cell>.*.csv  each finished cell's rows, written atomically (tmp + rename)
    results.csv         one row per (cell, phase, metric)   \
    clips.csv           one row per (cell, clip)             > merged from cells/
    frames.csv          one row per (cell, metric, frame)   /

A cell is finished exactly when its ``results`` part file exists, so a rerun skips it;
a kill leaves either the whole part or nothing (a stray ``*.tmp`` is ignored), and the
merged files are rewritten atomically from the parts after every cell: no half-written
or duplicated rows, whatever moment the process dies.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

RESULT_COLUMNS: tuple[str, ...] = (
    "run", "cell", "kind", "model", "family", "weights", "params", "dataset", "protocol",
    "height", "width", "frames_requested", "frames", "batch_size", "dtype", "mode", "device",
    "phase", "metric", "value", "p10", "p90", "ci_low", "ci_high", "unit", "n", "status",
    "message", "suite_version", "git_sha", "torch_version", "cuda_version", "python_version",
    "host", "timestamp",
)  # fmt: skip

CLIP_COLUMNS: tuple[str, ...] = (
    "run",
    "cell",
    "model",
    "weights",
    "dataset",
    "height",
    "width",
    "frames",
    "dtype",
    "mode",
    "device",
    "clip",
    "source",
    "start",
    "status",
    "reason",
)  # fmt: skip  (metric columns follow, one per quality metric)

FRAME_COLUMNS: tuple[str, ...] = (
    "run", "cell", "model", "weights", "dataset", "height", "width", "frames", "dtype", "mode",
    "device", "metric", "frame", "group_position", "value", "n",
)  # fmt: skip

TABLES = ("results", "clips", "frames")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); where directories cannot be opened, skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _frame(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    extra = [c for c in frame.columns if c not in columns]
    return frame.reindex(columns=[*columns, *sorted(extra)])


class RunStore:
    """Read and write one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def part(self, cell: str, table: str) -> Path:
        return self.cells_dir / f"{cell}.{table}.csv"

    def is_done(self, cell: str) -> bool:
        return self.part(cell, "results").exists()

    def done_cells(self) -> set[str]:
        if not self.cells_dir.exists():
            return set()
        return {p.name.split(".")[0] for p in self.cells_dir.glob("*.results.csv")}

    def cells_with_status(self, status: str) -> set[str]:
        """Finished cells with any row of this status (errors are retried on resume)."""
        frame = self.read_parts("results")
        return set(frame.loc[frame["status"] == status, "cell"]) if len(frame) else set()

    def write_cell(
        self,
        cell: str,
        results: list[Mapping[str, Any]],
        clips: list[Mapping[str, Any]] = (),
        frames: list[Mapping[str, Any]] = (),
    ) -> None:
        """Persist one finished cell; the ``results`` part is written last (it marks done)."""
        if not results:
            raise ValueError(f"cell {cell}: a finished cell has at least one result row")
        for table, rows, columns in (
            ("clips", clips, CLIP_COLUMNS),
            ("frames", frames, FRAME_COLUMNS),
            ("results", results, RESULT_COLUMNS),
        ):
            if rows or table == "results":
                atomic_write_text(self.part(cell, table), _frame(rows, columns).to_csv(index=False))
            else:  # a rerun cell must not keep the rows of its previous attempt
                self.part(cell, table).unlink(missing_ok=True)
        self.merge()

    def read_parts(self, table: str) -> pd.DataFrame:
        """All finished cells' rows of one table, in cell-file order."""
        done = self.done_cells()
        parts = [
            pd.read_csv(path, keep_default_na=False, na_values=[""])
            for path in sorted(self.cells_dir.glob(f"*.{table}.csv"))
            if path.name.split(".")[0] in done
        ]
        columns = {"results": RESULT_COLUMNS, "clips": CLIP_COLUMNS, "frames": FRAME_COLUMNS}[table]
        if not parts:
            return pd.DataFrame(columns=list(columns))
        frame = pd.concat(parts, ignore_index=True)
        extra = [c for c in frame.columns if c not in columns]
        return frame.reindex(columns=[*columns, *sorted(extra)])

    def merge(self) -> None:
        """Rewrite the run-level CSVs from the finished parts (atomic per file)."""
        for table in TABLES:
            frame = self.read_parts(table)
            if table == "results" or len(frame):
                atomic_write_text(self.root / f"{table}.csv", frame.to_csv(index=False))

    def write_metadata(self, metadata: Mapping[str, Any]) -> None:
        atomic_write_text(
            self.root / "run.json", json.dumps(metadata, indent=2, default=str) + "\n"
        )

    def read_metadata(self) -> dict[str, Any]:
        path = self.root / "run.json"
        return json.loads(path.read_text()) if path.exists() else {}


def csv_damage(path: Path) -> str:
    """Why a CSV file written by the store is not whole ("" when it is)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return f"unreadable ({error})"
    if not text:
        return "empty"
    if not text.endswith("\n"):
        return "last line cut off"
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        return f"not valid CSV ({error})"
    width = len(rows[0])
    short = [number for number, row in enumerate(rows[1:], start=2) if len(row) != width]
    if short:
        return f"line {short[0]} has a different number of fields than the header"
    return ""


def read_results(path: str | Path) -> pd.DataFrame:
    """``results.csv`` of a run directory (or the CSV itself); a damaged file is an error,
    not fewer rows."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}; run `vae-bench run SWEEP` first")
    problem = csv_damage(path)
    if problem:
        raise ValueError(
            f"{path}: {problem}; rerun the sweep (`vae-bench run SWEEP`) to rebuild it "
            "from the run's cell files"
        )
    return pd.read_csv(path, keep_default_na=False, na_values=[""])
