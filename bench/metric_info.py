"""What every metric the suite writes means to a reader: label, unit, direction, precision.

The one place that says which way each metric is better. The metric classes read their
``unit`` and ``higher_is_better`` from here, and tables, compare, the gate and the
figures read the same entries, so a new metric is declared once and every report knows
how to arrow, bold, judge and label it. Importing this module costs nothing (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

QUALITY, EFFICIENCY, FACT = "quality", "efficiency", "fact"


@dataclass(frozen=True)
class MetricInfo:
    """How one metric reads.

    ``higher_is_better`` is ``None`` for descriptive values (no arrow, never bold, no
    verdict). ``unit`` is the unit of the ``unit`` column of ``results.csv``; ``scale``
    converts a stored value into that unit (only ``params``: counted, shown in millions).
    ``decimals`` ``None`` lets a table choose the precision from its values.
    ``description`` says what the number is, for axis labels and help texts.
    """

    name: str
    label: str
    unit: str = ""
    higher_is_better: bool | None = True
    decimals: int | None = 2
    kind: str = QUALITY
    description: str = ""
    scale: float = 1.0

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]

    def axis_label(self) -> str:
        """``PSNR (dB, per frame, mean) ↑``: label, unit and description, then the arrow."""
        details = ", ".join(p for p in (self.unit, self.description) if p)
        return f"{self.label}{f' ({details})' if details else ''} {self.arrow}".rstrip()


_ALL = (
    MetricInfo("psnr", "PSNR", "dB", True, 2, description="per frame, mean"),
    MetricInfo("psnr_clip", "PSNR-clip", "dB", True, 2, description="per clip"),
    MetricInfo("ssim", "SSIM", "", True, 4),
    MetricInfo("lpips", "LPIPS", "", False, 4),
    MetricInfo("flicker", "Flicker", "[0,1]", False, 4,
               description="mean |Δrecon − Δorig| per frame step"),
    MetricInfo("rfvd", "rFVD", "", False, 1),
    MetricInfo("fvd", "rFVD", "", False, 1),
    MetricInfo("psnr_vs_full", "PSNR vs full", "dB", True, 2,
               description="mode output against full inference"),
    MetricInfo("seam_psnr_drop", "Seam PSNR drop", "dB", False, 2,
               description="away from seams minus at seams"),
    MetricInfo("seam_discontinuity", "Seam discontinuity", "[0,1]", False, 4,
               description="mean |Δmode − Δfull| across seams"),
    MetricInfo("latency_s", "Latency", "s", False, None, EFFICIENCY, "median"),
    MetricInfo("frames_per_s", "Throughput", "frames/s", True, None, EFFICIENCY),
    MetricInfo("clips_per_s", "Throughput", "clips/s", True, None, EFFICIENCY),
    MetricInfo("peak_allocated_mb", "Memory", "MiB", False, None, EFFICIENCY,
               "CUDA allocator peak"),
    MetricInfo("peak_reserved_mb", "Memory (reserved)", "MiB", False, None, EFFICIENCY,
               "CUDA allocator reserved peak"),
    MetricInfo("nvml_used_mb", "Memory (NVML)", "MiB", False, None, EFFICIENCY,
               "device memory in use, all processes"),
    MetricInfo("peak_rss_mb", "Memory (RSS)", "MiB", False, None, EFFICIENCY,
               "peak process RSS"),
    MetricInfo("rss_growth_mb", "Memory growth (RSS)", "MiB", False, None, EFFICIENCY,
               "peak RSS minus RSS at the phase's start"),
    MetricInfo("params", "Params", "M", None, None, FACT, scale=1e-6),
    MetricInfo("latent_channels", "Latent ch.", "", None, 0, FACT),
)  # fmt: skip

METRICS: dict[str, MetricInfo] = {m.name: m for m in _ALL}

#: What a run writes per kind (``fvd`` is only an alias that older tables used).
QUALITY_METRICS = tuple(m.name for m in _ALL if m.kind == QUALITY and m.name != "fvd")
EFFICIENCY_METRICS = tuple(m.name for m in _ALL if m.kind == EFFICIENCY)


def metric_info(name: str) -> MetricInfo:
    """The entry of a metric; an unknown one gets a neutral entry (no direction)."""
    return METRICS.get(name, MetricInfo(name, name, "", None, None))


def known(name: str) -> MetricInfo:
    """The entry of a metric the suite defines; a ``KeyError`` names the known ones."""
    if name not in METRICS:
        raise KeyError(f"metric {name!r} has no entry in vae_bench.metric_info; known: "
                       f"{', '.join(METRICS)}")
    return METRICS[name]
