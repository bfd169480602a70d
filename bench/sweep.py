"""Sweep files: which models x datasets x resolutions x frames x dtypes x modes to run.

A sweep is validated completely before any work starts, so a typo costs seconds, not
the hours of cells that ran before it. Example (after ``sweeps/default.yaml``)::

    name: default
    models:
      - identity                                   # preset name, its default weights
      - {preset: sd-vae-ft-mse, weights: random}   # random weights: efficiency only
      - {preset: wf-vae-l-16ch, weights: official} # the release, fetched on first use
      - {preset: sd-vae-ft-mse, weights: "hf://stabilityai/sd-vae-ft-ema"}  # any hub folder
    datasets: [synthetic]
    resolutions: [64, [64, 96]]                    # square side or [height, width]
    frames: [9, 17]
    dtypes: [float32]
    modes: [full]
    data: {workers: 2}                             # clip-loading processes (default: CPUs)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vae_bench.adapters.base import RANDOM_WEIGHTS, AdapterError, InferenceMode
from vae_bench.metrics import CONVENTIONS

DTYPES = ("float32", "float16", "bfloat16")
QUALITY_METRICS = ("psnr", "psnr_clip", "ssim", "lpips", "flicker", "rfvd", "rfid")
FVD_EXTRACTORS = ("styleganv-i3d", "videogpt-i3d")
# what a sweep does when a metric network file is absent ("fetch": download it first)
LPIPS_MISSING = ("error", "skip", "fetch", "fetch-or-skip")
FVD_MISSING = ("error", "random", "skip", "fetch", "fetch-or-random", "fetch-or-skip")


class SweepError(ValueError):
    """An invalid sweep: the message names the file, the key and the allowed values."""


@dataclass(frozen=True)
class ModelEntry:
    preset: str
    weights: str = RANDOM_WEIGHTS
    quality: bool | None = None  # None: quality only for real weights
    efficiency: bool = True
    modes: tuple[str, ...] | None = None  # None: the sweep's modes

    @property
    def label(self) -> str:
        return self.preset


@dataclass(frozen=True)
class QualitySettings:
    metrics: tuple[str, ...] = QUALITY_METRICS
    lpips_net: str = "alex"
    lpips_missing: str = "error"  # error | skip | fetch | fetch-or-skip
    convention: str = "suite"  # suite | wf-vae-official (bench.metrics.CONVENTIONS)
    batch_size: int = 1
    max_clips: int | None = None
    fvd_extractor: str = "styleganv-i3d"
    fvd_weights: str | None = None  # None: the cache dir; a path; "random"
    # when the weights file is absent: error | random | skip | fetch | fetch-or-random |
    # fetch-or-skip (fetch: download it; offline or failing, the part after "or")
    fvd_missing: str = "error"
    fvd_protocol: str = "rfvd"  # rfvd | rfvd-legacy-batch
    fid_weights: str | None = None  # rFID's Inception file; None: the cache directories
    samples: int = 2  # clips per cell kept as pictures (vae_bench.samples); 0: none
    sample_video: bool = False  # also an MP4 of each kept clip


@dataclass(frozen=True)
class EfficiencySettings:
    warmup: int = 1
    repeats: int = 3
    batch_size: int = 1
    seed: int = 0


@dataclass(frozen=True)
class DataSettings:
    """How clips are loaded (never what they contain: results do not depend on it)."""

    workers: int | None = None  # loader processes; None: one per CPU (vae_bench.loader)


@dataclass(frozen=True)
class Sweep:
    name: str
    models: tuple[ModelEntry, ...]
    datasets: tuple[str, ...] = ("synthetic",)
    resolutions: tuple[tuple[int, int], ...] = ((256, 256),)
    frames: tuple[int, ...] = (17,)
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = ("full",)
    device: str = "auto"
    datasets_file: str | None = None
    quality: QualitySettings = field(default_factory=QualitySettings)
    efficiency: EfficiencySettings = field(default_factory=EfficiencySettings)
    data: DataSettings = field(default_factory=DataSettings)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    """One unit of work; its ``key`` names it in the run directory (resume skips it)."""

    kind: str  # quality | efficiency
    model: str
    weights: str
    dataset: str
    height: int
    width: int
    frames: int
    dtype: str
    mode: str
    batch_size: int
    settings: str = ""  # the protocol settings that change the numbers (JSON)

    @property
    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True)
        return f"{self.kind[0]}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"

    @property
    def title(self) -> str:
        where = f" on {self.dataset}" if self.dataset else ""
        return (
            f"{self.kind} {self.model}{where} {self.height}x{self.width}x{self.frames} "
            f"{self.dtype} {self.mode}"
        )


# --- parsing ----------------------------------------------------------------------------
_TOP_KEYS = {
    "name", "models", "datasets", "resolutions", "frames", "dtypes", "modes", "device",
    "datasets_file", "quality", "efficiency", "data",
}  # fmt: skip
_MODEL_KEYS = {"preset", "weights", "quality", "efficiency", "modes"}


def _fail(source: str, key: str, problem: str) -> SweepError:
    return SweepError(f"{source}: {key}: {problem}")


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _positive_int(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(source, key, f"{value!r} is not a positive integer")
    return value


def _check_keys(source: str, where: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed, key=str)  # YAML keys need not be strings
    if unknown:
        raise _fail(
            source, where or unknown[0], f"unknown key(s) {unknown}; allowed: {sorted(allowed)}"
        )


def _resolution(source: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (
            _positive_int(source, "resolutions", value[0]),
            _positive_int(source, "resolutions", value[1]),
        )
    side = _positive_int(source, "resolutions", value)
    return (side, side)


def _typed(source: str, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """``value`` when it is a ``kind`` (bools are not integers here), else a SweepError."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise _fail(source, key, f"must be {what}, got {value!r}")
    return value


def _model(source: str, index: int, value: Any) -> ModelEntry:
    key = f"models[{index}]"
    if isinstance(value, str):
        return ModelEntry(preset=value)
    if not isinstance(value, dict) or "preset" not in value:
        raise _fail(source, key, "write a preset name or a mapping with a 'preset' key")
    _check_keys(source, key, value, _MODEL_KEYS)
    modes = value.get("modes")
    text = "a non-empty string"
    return ModelEntry(
        preset=_typed(source, f"{key}.preset", value["preset"], str, text),
        weights=str(_typed(source, f"{key}.weights", value.get("weights", RANDOM_WEIGHTS),
                           (str, Path), text)),  # fmt: skip
        quality=_typed(source, f"{key}.quality", value.get("quality"), (bool, type(None)),
                       "true, false or absent (quality only for real weights)"),  # fmt: skip
        efficiency=_typed(source, f"{key}.efficiency", value.get("efficiency", True), bool,
                          "true or false"),  # fmt: skip
        modes=tuple(str(m) for m in _list(modes)) if modes is not None else None,
    )


def _settings(source: str, key: str, data: Any, cls: type) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise _fail(source, key, "must be a mapping")
    allowed = set(cls.__dataclass_fields__)
    _check_keys(source, key, data, allowed)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    for name in ("warmup", "repeats", "batch_size", "max_clips", "seed", "samples"):
        value = values.get(name)
        if value is None:
            continue
        if name not in ("warmup", "seed", "samples"):
            _positive_int(source, f"{key}.{name}", value)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(source, f"{key}.{name}", f"must be an integer >= 0, got {value!r}")
    if values.get("workers") is not None:
        workers = values["workers"]
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise _fail(source, f"{key}.workers", "must be an integer >= 0 (0: load in the "
                        f"main process), got {workers!r}")  # fmt: skip
    if isinstance(values.get("metrics"), str):  # one metric written without a list
        values["metrics"] = (values["metrics"],)
    if "metrics" in values and (not isinstance(values["metrics"], tuple) or not values["metrics"]):
        raise _fail(source, f"{key}.metrics", f"must be a non-empty list, got {data['metrics']!r}")
    for name in ("lpips_net", "lpips_missing", "fvd_extractor", "fvd_missing", "fvd_protocol"):
        if name in values:
            _typed(source, f"{key}.{name}", values[name], str, "a string")
    if values.get("fid_weights") is not None:
        _typed(source, f"{key}.fid_weights", values["fid_weights"], str,
               "a path or absent (the cache directories)")  # fmt: skip
    if "sample_video" in values:
        _typed(source, f"{key}.sample_video", values["sample_video"], bool, "true or false")
    if values.get("fvd_weights") is not None:
        _typed(source, f"{key}.fvd_weights", values["fvd_weights"], str,
               "a path, 'random' or absent (the cache directory)")  # fmt: skip
    return cls(**values)


NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def check_run_name(name: Any, source: str, key: str = "name") -> str:
    """A run name becomes a directory under the output root: one plain path component."""
    if not isinstance(name, (str, int)) or isinstance(name, bool):
        raise _fail(source, key, f"must be a string, got {name!r}")
    if not NAME_PATTERN.fullmatch(str(name)):
        raise _fail(
            source, key,
            f"{str(name)!r} is not a valid run name; use letters, digits and . _ + - "
            "(not starting with . or -), it names the run's directory",
        )  # fmt: skip
    return str(name)


def parse_sweep(data: Any, source: str = "<sweep>") -> Sweep:
    """Build a :class:`Sweep` from parsed YAML; structural errors only (see validate)."""
    if not isinstance(data, dict):
        raise SweepError(f"{source}: a sweep file must be a mapping with 'name' and 'models'")
    _check_keys(source, "", data, _TOP_KEYS)
    for required in ("name", "models"):
        if required not in data:
            raise _fail(source, required, "missing (required)")
    models = tuple(_model(source, i, m) for i, m in enumerate(_list(data["models"])))
    if not models:
        raise _fail(source, "models", "at least one model is required")
    dtypes = tuple(str(d) for d in _list(data.get("dtypes", ["float32"])))
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise _fail(source, "dtypes", f"{dtype!r} is not allowed; allowed: {list(DTYPES)}")
    modes = tuple(str(m) for m in _list(data.get("modes", ["full"])))
    for mode in modes + tuple(m for e in models for m in (e.modes or ())):
        try:
            InferenceMode.parse(mode)
        except AdapterError as error:
            raise _fail(source, "modes", str(error)) from None
    name = check_run_name(data["name"], source)
    for key in ("datasets", "resolutions", "frames", "dtypes", "modes"):
        if key in data and not _list(data[key]):
            raise _fail(source, key, "must not be empty (leave the key out for the default)")
    if data.get("datasets_file") is not None:
        _typed(source, "datasets_file", data["datasets_file"], str, "a path")
    if "device" in data:
        _typed(source, "device", data["device"], str, "auto, cpu, cuda or cuda:N")
    quality = _settings(source, "quality", data.get("quality"), QualitySettings)
    for metric in quality.metrics:
        if metric not in QUALITY_METRICS:
            raise _fail(
                source, "quality.metrics", f"{metric!r} unknown; allowed: {list(QUALITY_METRICS)}"
            )
    if quality.lpips_missing not in LPIPS_MISSING:
        raise _fail(source, "quality.lpips_missing", f"allowed: {', '.join(LPIPS_MISSING)}")
    if quality.lpips_net not in ("alex", "vgg"):
        raise _fail(source, "quality.lpips_net", "allowed: alex, vgg")
    if quality.convention not in CONVENTIONS:
        raise _fail(
            source,
            "quality.convention",
            f"{quality.convention!r} not allowed; allowed: {list(CONVENTIONS)}",
        )
    for key, value, allowed in (
        ("fvd_extractor", quality.fvd_extractor, FVD_EXTRACTORS),
        ("fvd_missing", quality.fvd_missing, FVD_MISSING),
        ("fvd_protocol", quality.fvd_protocol, ("rfvd", "rfvd-legacy-batch")),
    ):
        if value not in allowed:
            raise _fail(
                source, f"quality.{key}", f"{value!r} not allowed; allowed: {list(allowed)}"
            )
    return Sweep(
        name=name,
        models=models,
        datasets=tuple(str(d) for d in _list(data.get("datasets", ["synthetic"]))),
        resolutions=tuple(_resolution(source, r) for r in _list(data.get("resolutions", [256]))),
        frames=tuple(_positive_int(source, "frames", f) for f in _list(data.get("frames", [17]))),
        dtypes=dtypes,
        modes=modes,
        device=str(data.get("device", "auto")),
        datasets_file=data.get("datasets_file"),
        quality=quality,
        efficiency=_settings(source, "efficiency", data.get("efficiency"), EfficiencySettings),
        data=_settings(source, "data", data.get("data"), DataSettings),
        source=source,
    )


def resolve_sweep(name_or_path: str | Path) -> Path:
    """A sweep file's path: an existing path as given, else a shipped sweep's name."""
    from vae_bench import sweeps

    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = sweeps.shipped()
    key = path.with_suffix("").as_posix() if path.suffix in (".yaml", ".yml") else str(path)
    if key in shipped:
        return shipped[key]
    close = difflib.get_close_matches(key, list(shipped), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SweepError(
        f"sweep file not found: {name_or_path} (neither a path nor a shipped sweep{hint}; "
        "`vae-bench list --sweeps` lists the shipped ones)"
    )


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep given by path or by a shipped sweep's name."""
    path = resolve_sweep(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SweepError(f"{path}: cannot read the sweep file: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SweepError(f"{path}: not valid YAML: {error}") from None
    return parse_sweep(data, str(path))
