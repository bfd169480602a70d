"""``vae-bench``: list models, datasets and paper protocols, fetch weights, run sweeps, redraw
reports."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vae_bench.adapters import AdapterError


def _cmd_list(args: argparse.Namespace) -> int:
    from vae_bench.adapters.model_table import markdown_table, official_weights
    from vae_bench.adapters.registry import presets_by_family
    from vae_bench.data import load_datasets

    if args.markdown:
        print(markdown_table())
        return 0

    if args.sweeps:
        from vae_bench import sweeps

        print("sweeps (shipped; `vae-bench run NAME`):")
        for name, path in sweeps.shipped().items():
            print(f"  {name:38s} {path}")
        return 0
    print("models (presets), by family:")
    for family, members in presets_by_family().items():
        print(f"  {family}")
        for preset in members:
            print(f"    {preset.name:24s} {preset.description}")
            print(f"    {'':24s} official weights: {preset.release or official_weights(preset)}")
    print("\ndatasets:")
    for name, dataset in load_datasets(args.datasets).items():
        print(f"  {name:24s} {dataset.protocol}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's stop), taken through the same graceful path as Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _cmd_fetch(args: argparse.Namespace) -> int:
    from vae_bench.fetch.command import fetch_command

    return fetch_command(
        args.names, every=args.all, metrics=args.metrics, listing=args.list, offline=args.offline
    )


def _cmd_run(args: argparse.Namespace) -> int:
    import os
    import signal

    if args.offline:  # read by the fetch code and by huggingface_hub (not yet imported)
        os.environ["HF_HUB_OFFLINE"] = "1"

    from vae_bench import distributed
    from vae_bench.runner import run_sweep
    from vae_bench.sweep import load_sweep

    sweep = load_sweep(args.sweep)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        root = run_sweep(sweep, args.out, run_name=args.name, device=args.device,
                         workers=args.workers, plots=not args.no_plots)  # fmt: skip
    except KeyboardInterrupt as stop:
        name = "SIGTERM" if isinstance(stop, Terminated) else "SIGINT (Ctrl-C)"
        print(f"vae-bench: stopped by {name}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        distributed.shutdown()
    if not distributed.from_environment().is_main:
        return 0  # rank 0 reports
    from vae_bench.results import read_results

    print_memory_growth(read_results(root), root)
    print(f"results: {root / 'results.csv'}  clips: {root / 'clips.csv'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from vae_bench.report.plots import plot_run
    from vae_bench.report.temporal import read_frames
    from vae_bench.results import read_results

    run_dir = Path(args.run)
    results = read_results(run_dir)
    for path in plot_run(results, run_dir / "plots", frames=read_frames(run_dir)):
        print(path)
    print_memory_growth(results, run_dir)
    return 0


def print_memory_growth(results, run_dir: Path) -> None:
    """Write and show how memory grows with clip length (memory ~ frames**k)."""
    from vae_bench.report.memory import describe, memory_growth_table

    table = memory_growth_table(results)
    if len(table):
        table.to_csv(run_dir / "memory_growth.csv", index=False)
        columns = ["model", "mode", "phase", "height", "width", "metric", "exponent",
                   "frames_min", "frames_max"]  # fmt: skip
        print(describe(table))
        print(table[[c for c in columns if c in table.columns]].to_string(index=False))


def _call(function_path: str, args: argparse.Namespace):
    """Call a report function with the parsed options (dest names = parameter names)."""
    import importlib

    module, name = function_path.rsplit(":", 1)
    options = {k: v for k, v in vars(args).items() if k not in ("command", "func", "verbose")}
    return getattr(importlib.import_module(module), name)(**options)


def _cmd_table(args: argparse.Namespace) -> int:
    print(_call("vae_bench.report.tables:make_table", args))
    return 0


def _cmd_papers(args: argparse.Namespace) -> int:
    from vae_bench.report.published import list_papers

    print(list_papers())
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from vae_bench.report.compare import to_markdown

    comparison, paths = _call("vae_bench.report.compare:run_compare", args)
    print(to_markdown(comparison))
    for path in paths:
        print(path)
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    return _call("vae_bench.report.gate:run_gate", args)


def _cmd_html(args: argparse.Namespace) -> int:
    print(_call("vae_bench.report.html:write_html_report", args))
    return 0


def _workers(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vae-bench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered models (presets) and datasets")
    p.add_argument("--datasets", default=None, help="datasets.yaml (default: ./datasets.yaml)")
    p.add_argument("--sweeps", action="store_true", help="list the shipped sweeps instead")
    p.add_argument("--markdown", action="store_true",
                   help="every preset's latent channels, factors, frame rule, size and weights "
                   "as a Markdown table (the README's)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="run a sweep file (resumes a run of the same name)")
    p.add_argument("sweep", help="sweep YAML path, or a shipped sweep's name (e.g. default)")
    p.add_argument("--out", default="reports", help="root of run directories (default: ./reports)")
    p.add_argument("--name", default=None, help="run name (default: the sweep's name)")
    p.add_argument("--device", default=None, help="override the sweep's device (auto|cpu|cuda:N)")
    p.add_argument("--workers", type=_workers, default=None, metavar="N",
                   help="clip-loading processes per run (or rank); 0 loads in the main "
                   "process (default: the sweep's data.workers, else one per CPU)")
    p.add_argument("--no-plots", action="store_true", help="CSVs only (`report` draws later)")
    p.add_argument("--offline", action="store_true", help="fetch nothing (as HF_HUB_OFFLINE=1)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("fetch", help="download official checkpoints and metric networks")
    p.add_argument("names", nargs="*",
                   help="presets (e.g. wf-vae-l-16ch), metric networks (e.g. lpips-alex, "
                   "styleganv-i3d), hf://org/repo[/subfolder][@revision] or https:// URLs")
    p.add_argument("--all", action="store_true", help="every preset with a release, and --metrics")
    p.add_argument("--metrics", action="store_true",
                   help="the metric networks: LPIPS AlexNet and VGG, both I3Ds, the FID Inception")
    p.add_argument("--list", action="store_true",
                   help="show every source, its files, hashes and whether it is cached")
    p.add_argument("--offline", action="store_true",
                   help="no network: check and show what is cached (as HF_HUB_OFFLINE=1)")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("papers", help="the paper protocols (sweeps) and their published tables")
    p.set_defaults(func=_cmd_papers)

    p = sub.add_parser("report", help="redraw the plots of a run from its results.csv")
    p.add_argument("run", help="run directory, e.g. reports/default")
    p.set_defaults(func=_cmd_report)

    from vae_bench.report import compare, gate, html, tables

    for name, module, func, text in (
        ("table", tables, _cmd_table, "paper-ready table of a run (md, latex, csv)"),
        ("compare", compare, _cmd_compare, "paired per-clip comparison of two runs"),
        ("gate", gate, _cmd_gate, "regression gate: exit 1 when the current run regresses"),
        ("html", html, _cmd_html, "self-contained HTML report of a run"),
    ):
        p = sub.add_parser(name, help=text)
        module.add_arguments(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from vae_bench.data import DatasetError
    from vae_bench.distributed import RankFailed
    from vae_bench.fetch import FetchError
    from vae_bench.report.compare import CompareError
    from vae_bench.report.gate import GateError
    from vae_bench.report.tables import TableError
    from vae_bench.sweep import SweepError

    expected = (
        SweepError,
        DatasetError,
        AdapterError,
        FileNotFoundError,
        TableError,
        CompareError,
        GateError,
        RankFailed,
        FetchError,
    )
    try:
        return args.func(args)
    except expected as error:
        print(f"vae-bench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
