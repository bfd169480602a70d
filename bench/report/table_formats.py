"""Renderers of a built :class:`~vae_bench.report.tables.Table`: Markdown, LaTeX, CSV.

The CSV is for machines: a header row and one row per model, numbers in display units
(not rounded; whole numbers as integers), empty where nothing was measured, a
``<column> status`` column where a cell failed (``oom``, ``skipped``, ...), and no
footnotes inside the file (:func:`notes_text` gives them, for a file beside it).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from vae_bench.report.tables import Table

FORMATS = ("md", "latex", "csv")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown; the notes follow as a list."""
    grouped = table.grouped
    headers = ["Model"] + [
        _md_escape(f"{c.group} · {c.header()}" if grouped and c.group else c.header())
        for c in table.columns
    ]
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join([":---"] + ["---:"] * len(table.columns)) + " |"]
    for label, row in zip(table.row_labels, table.cells, strict=True):
        texts = []
        for cell in row:
            text = f"**{cell.text}**" if cell.best else cell.text
            texts.append(f"{text} ± {cell.ci_text}" if cell.ci_text else text)
        lines.append("| " + " | ".join([_md_escape(label), *texts]) + " |")
    lines.append("")
    lines += [f"- {_md_escape(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
                  "∞": r"$\infty$", "±": r"$\pm$", "—": "---", "–": "--", "·": r"$\cdot$",
                  "×": r"$\times$", "Δ": r"$\Delta$", "÷": r"$\div$",
                  "−": "$-$"}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular``; the notes below it, small."""
    n = len(table.columns)
    out = ["% vae-bench table; needs \\usepackage{booktabs}",
           "\\begin{table}[t]", "\\centering", "\\small",
           f"\\begin{{tabular}}{{l{'r' * n}}}", "\\toprule"]
    if table.grouped:
        heads, rules, start = [""], [], 2
        for name, span in table.groups:
            heads.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(name)}}}" if name
                         else " & ".join([""] * span))
            if name:
                rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        out.append(" & ".join(heads) + " \\\\")
        out.append(" ".join(rules))
    out.append(" & ".join(["Model"] + [latex_escape(c.header()) for c in table.columns])
               + " \\\\")
    out.append("\\midrule")
    for label, row in zip(table.row_labels, table.cells, strict=True):
        texts = []
        for cell in row:
            text = latex_escape(cell.text)
            if cell.best:
                text = f"\\textbf{{{text}}}"
            if cell.ci_text:
                text += f"\\,{{\\scriptsize$\\pm${latex_escape(cell.ci_text)}}}"
            texts.append(text)
        out.append(" & ".join([latex_escape(label), *texts]) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    if table.notes:
        out.append("\\par\\vspace{2pt}")
        out.append("{\\footnotesize\\raggedright")
        out += [latex_escape(note) + "\\\\" for note in table.notes[:-1]]
        out.append(latex_escape(table.notes[-1]) + "\\par}")
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def _number(value: float) -> float | int:
    """Ten significant digits (drops binary noise such as ``120.39999999999999``); whole
    numbers as integers (latent channels ``4``, not ``4.0``)."""
    value = float(f"{value:.10g}")
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


def to_csv(table: Table) -> str:
    """One header row, one row per model; see the module doc. Read it back with
    ``pandas.read_csv(path)``: numeric columns come back numeric."""
    data: dict[str, list[object]] = {"model": list(table.row_labels)}
    for j, column in enumerate(table.columns):
        name = f"{column.group} {column.header()}".strip()
        cells = [row[j] for row in table.cells]
        data[name] = [_number(c.value) if c.status == "ok" else "" for c in cells]
        if any(c.ci_text for c in cells):
            data[f"{name} ci_low"] = [_number(c.ci_low) if c.ci_text else "" for c in cells]
            data[f"{name} ci_high"] = [_number(c.ci_high) if c.ci_text else "" for c in cells]
        if any(c.status not in ("ok", "missing") for c in cells):
            data[f"{name} status"] = ["" if c.status in ("ok", "missing") else c.status
                                      for c in cells]
    buffer = io.StringIO()
    pd.DataFrame(data).to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def notes_text(table: Table) -> str:
    """The footnotes as plain lines, for the file beside a CSV table."""
    return "".join(f"{note}\n" for note in table.notes)


RENDERERS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}


def render(table: Table, fmt: str = "md") -> str:
    if fmt not in RENDERERS:
        raise ValueError(f"format {fmt!r} unknown; allowed: {', '.join(FORMATS)}")
    return RENDERERS[fmt](table)
