"""``vae-bench fetch``: download named releases and metric networks, or list every source."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence

from vae_bench.adapters.source import Source
from vae_bench.fetch.catalog import (
    DEFAULT_METRICS,
    FETCH_COMMAND,
    METRIC_NETWORKS,
    Fetched,
    entries,
    fetch_source,
    preset_source,
)
from vae_bench.fetch.download import FetchError

Target = tuple[str, Callable[[bool], Fetched]]


def targets(names: Sequence[str], *, every: bool = False, metrics: bool = False) -> list[Target]:
    """What to fetch, each with its label; unknown names fail before any download."""
    from vae_bench.adapters import presets

    known = presets()
    chosen = list(names)
    if every:
        chosen += [name for name, preset in known.items() if preset.source is not None]
    if every or metrics:
        chosen += list(DEFAULT_METRICS)
    found: list[Target] = []
    for name in dict.fromkeys(chosen):
        if name in METRIC_NETWORKS:
            found.append(
                (name, lambda offline, net=METRIC_NETWORKS[name]: net.fetch(offline=offline))
            )
        elif name in known:
            source = preset_source(known[name])
            found.append((name, _fetcher(source, f"{FETCH_COMMAND} {name}")))
        elif Source.is_remote(name):
            try:
                source = Source.parse(name)
            except ValueError as error:
                raise FetchError(str(error)) from None
            found.append((name, _fetcher(source, f"{FETCH_COMMAND} {name}")))
        else:
            close = difflib.get_close_matches(name, [*known, *METRIC_NETWORKS], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise FetchError(
                f"unknown name {name!r}{hint} (`vae-bench fetch --list` shows every source)"
            )
    return found


def _fetcher(source: Source, hint: str) -> Callable[[bool], Fetched]:
    return lambda offline: fetch_source(source, offline=offline, hint=hint)


def fetch_command(
    names: Sequence[str],
    *,
    every: bool = False,
    metrics: bool = False,
    listing: bool = False,
    offline: bool = False,
) -> int:
    """Fetch (or, offline, check) each target; print where its files lie and their sha256."""
    if listing:
        print_listing()
        return 0
    chosen = targets(names, every=every, metrics=metrics)
    if not chosen:
        raise FetchError(
            "name what to fetch: presets, metric networks, hf:// or https:// sources, or "
            "--all / --metrics (`vae-bench fetch --list` shows every source)"
        )
    failed = 0
    for label, fetch in chosen:
        try:
            fetched = fetch(offline)
        except FetchError as error:
            print(f"{label}: error: {error}", file=sys.stderr)
            failed += 1
            continue
        state = "fetched" if fetched.fetched else "cached"
        commit = f" @ {fetched.commit}" if fetched.commit else ""
        print(f"{label}: {state} from {fetched.source}{commit} -> {fetched.path}")
        for record in fetched.files:
            print(f"  {record.name}  {record.size} bytes  sha256 {record.sha256}")
    return 2 if failed else 0


def print_listing() -> None:
    """Every preset's release and metric network: source, files, hashes, cached or not."""
    for entry in entries():
        print(f"{entry.name:22s} {'cached' if entry.cached == 'yes' else '-':7s}{entry.source}")
        print(f"{'':30s}files: {entry.files}")
        if entry.source.note:
            print(f"{'':30s}note: {entry.source.note}")
