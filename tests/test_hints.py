"""Every hint the suite prints names something the user can type.

The messages are read from the source: every string literal outside docstrings, in every
module of the package (an f-string's fields read as ``{}``), so a message is checked the day
it is written, not when a test happens to trigger it. A hint in backticks must be one of

* a ``vae-bench ...`` command line that the CLI's parser accepts,
* a ``--flag`` of the CLI,
* a sweep snippet (``quality.fvd_missing: skip``, ``weights: none``) that the sweep schema
  accepts, or a key of the sweep or of a gates-file rule,
* an inference mode that parses (``spatial_tiles(256, 32)``),
* a Python call (``RFVD(keep_features=True)``) whose keywords the named class takes.

Outside backticks, every ``--flag`` and every ``quality.*``/``efficiency.*`` key must exist,
and no hint may be a Python keyword (``use name=value``): nothing on the command line or
in a sweep file is typed that way.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import re
import shlex
from pathlib import Path

import pytest
import yaml

import vae_bench
import vae_bench.adapters
import vae_bench.sweeps
from vae_bench.adapters.base import InferenceMode
from vae_bench.cli import build_parser
from vae_bench.data import _FOLDER_KEYS
from vae_bench.report.gate import MetricRule
from vae_bench.sweep import (
    _MODEL_KEYS,
    _TOP_KEYS,
    EfficiencySettings,
    QualitySettings,
    SweepError,
    parse_sweep,
)

FIELD = "{}"  # an f-string's formatted field
SECTIONS = {"quality": QualitySettings, "efficiency": EfficiencySettings}
SECTION_KEYS = {s: {f.name for f in dataclasses.fields(c)} for s, c in SECTIONS.items()}
GATE_RULE_KEYS = {f.name for f in dataclasses.fields(MetricRule)}
SWEEP_KEYS = _TOP_KEYS | _MODEL_KEYS | set().union(*SECTION_KEYS.values())
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
SECTION_KEY = re.compile(r"(?<![\w.])(quality|efficiency)\.([a-z_]+)\b")
PYTHON_KEYWORD_HINT = re.compile(r"\b(?:use|pass|set|give|add|try)\s+([a-z_][a-z0-9_]*)=")
SNAKE_AFTER_VERB = re.compile(r"\b(?:use|pass|set|give)\s+(?:the\s+)?([a-z]+_[a-z0-9_]+)\b(?!=)")
PLACEHOLDER = re.compile(r"^(<[^>]*>|[A-Z][A-Z_]*|\{\})$")


# --------------------------------------------------------------------------- messages


def _package_files() -> list[Path]:
    roots = [Path(p) for pkg in (vae_bench, vae_bench.adapters, vae_bench.sweeps)
             for p in pkg.__path__]  # fmt: skip
    return sorted({p.resolve() for root in roots for p in root.rglob("*.py")})


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal of a module but its docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    out = []
    for node in ast.walk(tree):  # breadth first: an f-string before its parts
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
            text = "".join(v.value if isinstance(v, ast.Constant) else FIELD
                           for v in node.values)  # fmt: skip
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skip:
                continue
            text = node.value
        else:
            continue
        out.append((node.lineno, text))
    return out


MESSAGES = [(f"{path.parent.name}/{path.name}:{line}", text) for path in _package_files()
            for line, text in _strings(path)]  # fmt: skip
HINTS = [(where, span) for where, text in MESSAGES
         for span in re.findall(r"`([^`\n]+)`", text)]  # fmt: skip


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """The CLI's parsers by subcommand ('' for the top level)."""
    top = build_parser()
    parsers = {"": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update(action.choices)
    return parsers


PARSERS = _parsers()
ALL_FLAGS = {flag for p in PARSERS.values() for a in p._actions for flag in a.option_strings}


# --------------------------------------------------------------------------- checks


def _sweep(**extra: object) -> dict:
    return {"name": "hint", "models": ["identity"], **extra}


def _check_sweep_snippet(key: str, value: str | None) -> None:
    """``section.key: value`` or ``key: value``: the key exists and the sweep takes the
    value (each of ``a|b``); a placeholder value is not checked."""
    section, _, name = key.rpartition(".")
    if not section and name in _FOLDER_KEYS and name not in _TOP_KEYS | _MODEL_KEYS:
        assert value is None or PLACEHOLDER.match(value), f"check `{key}: {value}` by hand"
        return  # a datasets-file key, shown with a placeholder value
    if section:
        assert section in SECTIONS and name in SECTION_KEYS[section], f"no sweep key {key}"
    else:
        assert name in _TOP_KEYS | _MODEL_KEYS, f"no sweep key {key}"
    if value is None or PLACEHOLDER.match(value) or FIELD in value:
        return
    for alternative in value.split("|"):
        parsed = yaml.safe_load(alternative)
        if section:
            data = _sweep(**{section: {name: parsed}})
        elif name in _MODEL_KEYS:
            data = _sweep(models=[{"preset": "identity", name: parsed}])
        else:
            data = _sweep(**{name: parsed})
        try:
            parse_sweep(data, "hint")
        except SweepError as error:
            pytest.fail(f"`{key}: {alternative}` is not a valid sweep setting: {error}")


def _check_command(span: str) -> None:
    argv = ["x" if PLACEHOLDER.match(t) or FIELD in t else t for t in shlex.split(span)[1:]]
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"the CLI rejects `{span}`")
    parser = PARSERS[argv[0]]  # exact flags, not abbreviations argparse would take
    flags = {f for a in [*PARSERS[""]._actions, *parser._actions] for f in a.option_strings}
    for token in argv:
        if token.startswith("--"):
            assert token.split("=")[0] in flags, f"vae-bench {argv[0]} has no {token}"


def _find_callable(name: str) -> object:
    """The class or function ``name`` defined at the top of one of the package's modules."""
    packages = {Path(p).resolve(): pkg.__name__
                for pkg in (vae_bench, vae_bench.adapters, vae_bench.sweeps)
                for p in pkg.__path__}  # fmt: skip
    for root, package in packages.items():
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if any(isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name
                   for n in tree.body):  # fmt: skip
                parts = path.relative_to(root).with_suffix("").parts
                module = ".".join((package, *parts)).removesuffix(".__init__")
                return getattr(importlib.import_module(module), name)
    pytest.fail(f"no {name} in the package")


def _check_call(span: str) -> None:
    call = ast.parse(span.replace(FIELD, "0"), mode="eval").body
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name), span
    parameters = inspect.signature(_find_callable(call.func.id)).parameters
    for keyword in call.keywords:
        assert keyword.arg in parameters, f"{call.func.id} takes no {keyword.arg}="


def check_hint(span: str) -> None:
    """Fail unless ``span`` is something a user can type (see the module docstring)."""
    span = span.strip()
    words = span.split()
    snippet = re.fullmatch(r"([a-z_]+(?:\.[a-z_]+)?)(?::\s*(.+))?", span)
    if all(PLACEHOLDER.match(w) for w in words):
        pass  # a value shown in quotes, e.g. a run's name
    elif words[0] == "vae-bench":
        _check_command(span)
    elif span.startswith("--"):
        assert words[0] in ALL_FLAGS, f"no CLI flag {words[0]}"
    elif snippet and (":" in span or "." in span):
        _check_sweep_snippet(snippet[1], snippet[2])
    elif re.fullmatch(r"[A-Za-z_]\w*\(.*=.*\)", span):
        _check_call(span)
    elif re.fullmatch(r"[a-z_]+\(.*\)", span):  # an inference mode; N stands for a number
        InferenceMode.parse(re.sub(r"\b[A-Z]\b|\{\}", "8", span))
    elif re.fullmatch(r"[a-z_]+", span):
        known = SWEEP_KEYS | GATE_RULE_KEYS | set(PARSERS) | set(InferenceMode.KINDS)
        assert span in known, f"`{span}` is neither a sweep or gate key nor a subcommand"
    else:
        pytest.fail(f"`{span}` is not a form a user can type (command, flag, sweep key, mode)")


@pytest.mark.parametrize(("where", "span"), HINTS, ids=[f"{w} {s}" for w, s in HINTS])
def test_backticked_hint_is_typable(where: str, span: str) -> None:
    check_hint(span.replace("{{", "{").replace("}}", "}"))


def test_every_flag_and_sweep_key_named_exists() -> None:
    wrong = []
    for where, text in MESSAGES:
        if " " not in text:
            continue  # one token: an argv element or a flag being defined
        wrong += [f"{where}: {flag}" for flag in FLAG.findall(text) if flag not in ALL_FLAGS]
        wrong += [f"{where}: {s}.{k}" for s, k in SECTION_KEY.findall(text)
                  if k not in SECTION_KEYS[s]]  # fmt: skip
    assert not wrong, f"options that do not exist: {wrong}"


def test_no_hint_is_a_python_keyword() -> None:
    wrong = [f"{where}: {text!r}" for where, text in MESSAGES
             if PYTHON_KEYWORD_HINT.search(text)]  # fmt: skip
    known = SWEEP_KEYS | GATE_RULE_KEYS
    wrong += [f"{where}: {m[1]!r} in {text!r}" for where, text in MESSAGES
              for m in SNAKE_AFTER_VERB.finditer(text) if m[1] not in known]  # fmt: skip
    assert not wrong, "hints written as Python, which no command line or sweep takes:\n" + (
        "\n".join(wrong))


# --------------------------------------------------------------------------- the checker


@pytest.mark.parametrize(
    "hint",
    ["use lpips_pretrained=False", "pass weights=<path to the file>", "pass build_models to"],
)
def test_the_python_style_hints_are_caught(hint: str) -> None:
    text = f"LPIPS weights missing; {hint} instead"
    assert PYTHON_KEYWORD_HINT.search(text) or (
        (m := SNAKE_AFTER_VERB.search(text)) and m[1] not in SWEEP_KEYS | GATE_RULE_KEYS)


@pytest.mark.parametrize(
    "span",
    ["quality.lpips_pretrained: false", "quality.fvd_missing: ignore", "weights=<path>",
     "vae-bench table RUN --build-model", "--build-model", "lpips_pretrained",
     "temporal_chunk(8)", "RFVD(keep_feature=True)"],
)  # fmt: skip
def test_the_checker_rejects_what_cannot_be_typed(span: str) -> None:
    with pytest.raises((Exception, pytest.fail.Exception)):
        check_hint(span)


@pytest.mark.parametrize(
    "span",
    ["quality.fvd_weights: <path to the file>", "quality.fvd_missing: random|skip",
     "weights: none", "--build-models", "vae-bench table RUN --build-models",
     "vae-bench list --sweeps", "spatial_tiles(256, 32)", "RFVD(keep_features=True)",
     "rel_tol", "modes"],
)  # fmt: skip
def test_the_checker_accepts_what_can_be_typed(span: str) -> None:
    check_hint(span)
