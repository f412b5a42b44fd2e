"""Command-line options and ini keys of the `llmeval` group, parsed once into `Settings`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmeval.analyze.gates import Gate, GateError, parse_gate
from pytest_llmeval.baseline_option import add_baseline_option
from pytest_llmeval.declare.data import DATA_DIR_ENV
from pytest_llmeval.declare.ids import any_arm_of
from pytest_llmeval.declare.models import (
    DEFAULT_MODEL,
    UnknownModel,
    load_user_aliases,
    resolve_model,
    resolve_models,
)
from pytest_llmeval.declare.settings import CacheMode, Settings
from pytest_llmeval.fit_options import (
    FIT_INI_DEFAULTS,
    add_fit_options,
    read_smoke,
    read_vram_check,
)
from pytest_llmeval.report.paths import report_paths_problem
from pytest_llmeval.sampling_options import add_sampling_options, read_sampling


def add_options(parser: pytest.Parser) -> None:
    """Register the `llmeval` option group and its ini keys."""
    group = parser.getgroup("llmeval", "LLM evaluations (pytest_llmeval)")
    group.addoption(
        "--model",
        action="append",
        dest="llmeval_models",
        metavar="[ARM=]SPEC",
        default=None,
        help="Model to evaluate: alias, Hub id, local dir or backend:spec, named with ARM= "
        f"(repeatable; default {DEFAULT_MODEL})",
    )
    group.addoption(
        "--limit",
        type=int,
        dest="llmeval_limit",
        metavar="N",
        default=None,
        help="Keep N items per task by seeded sampling (stratified by label when declared)",
    )
    group.addoption(
        "--gate",
        action="append",
        dest="llmeval_gates",
        metavar="GATE",
        default=None,
        help="Gate such as 'gsm8k:accuracy>=0.3' (overrides the task's gate on that metric)",
    )
    group.addoption(
        "--llmeval-baseline-arm",
        dest="llmeval_baseline_arm",
        metavar="NAME",
        default=None,
        help="Arm the other arms are compared with (default: each task's first arm)",
    )
    group.addoption(
        "--compare-backend",
        dest="llmeval_compare",
        metavar="SPEC",
        default=None,
        help="Also run every item on this model/backend and compare labels (agreement runs)",
    )
    group.addoption(
        "--llmeval-seed", type=int, default=None, help="Seed for --limit sampling (default 0)"
    )
    group.addoption(
        "--llmeval-data-dir",
        metavar="DIR",
        default=None,
        help=f"Directory with offline copies of task data (also env {DATA_DIR_ENV})",
    )
    group.addoption(
        "--llmeval-batch-size",
        metavar="N",
        default=None,
        help="Generation batch size, or 'auto' for the backend's default",
    )
    group.addoption(
        "--llmeval-device", default=None, help="Device for local models: auto, cpu, cuda, cuda:1"
    )
    group.addoption(
        "--llmeval-dtype",
        default=None,
        help="Dtype for local models: auto, float32, bfloat16, float16",
    )
    group.addoption(
        "--llmeval-report",
        metavar="PATH",
        default=None,
        help="JSON report path (default reports/<run-id>/report.json)",
    )
    group.addoption(
        "--llmeval-strict",
        action="store_true",
        default=None,
        help="Plain pytest exit status: any wrong item fails the run, not only gates",
    )
    group.addoption(
        "--llmeval-pin-gpus",
        choices=["auto", "on", "off"],
        default=None,
        help="With xdist, give each worker one GPU through CUDA_VISIBLE_DEVICES; auto (the "
        "default) does so when the session uses llmeval options or ini keys",
    )
    group.addoption(
        "--llmeval-cache",
        choices=["on", "off", "read"],
        default=None,
        help="Generation cache: on (read and write), read (never write) or off (default on)",
    )
    group.addoption(
        "--llmeval-cache-dir",
        metavar="DIR",
        default=None,
        help="Generation cache directory (default .llmeval_cache under the rootdir)",
    )
    group.addoption(
        "--llmeval-progress",
        type=float,
        metavar="SECONDS",
        default=None,
        help="Print a progress line at most every SECONDS (default 30; 0 turns it off)",
    )
    group.addoption(
        "--llmeval-allow-missing",
        action="store_true",
        default=None,
        help="A task whose data is missing is skipped and its gates are reported as not "
        "evaluated, instead of failing",
    )
    group.addoption(
        "--llmeval-invariance-check",
        type=int,
        metavar="N",
        default=None,
        help="Generate a seeded sample of N items per task and model again alone (batch size "
        "1, uncached) and report how many texts and scores batching changed",
    )
    group.addoption(
        "--llmeval-batch-invariant",
        action="store_true",
        default=None,
        help="Batch only prompts of equal token length, so no prompt is padded (slower; "
        "backends that count prompt tokens)",
    )
    add_sampling_options(group)
    add_baseline_option(group)
    add_fit_options(parser, group)
    parser.addini(
        "llmeval_allow_missing", "Default --llmeval-allow-missing", type="bool", default=False
    )
    parser.addini("llmeval_invariance_check", "Default --llmeval-invariance-check", default="")
    parser.addini(
        "llmeval_batch_invariant", "Default --llmeval-batch-invariant", type="bool", default=False
    )
    parser.addini("llmeval_progress", "Default --llmeval-progress", default="30")
    parser.addini("llmeval_cache", "Default --llmeval-cache", default="on")
    parser.addini(
        "llmeval_cache_dir", "Default --llmeval-cache-dir, relative to the rootdir", default=""
    )
    parser.addini("llmeval_pin_gpus", "Default --llmeval-pin-gpus", default="auto")
    parser.addini("llmeval_models", "Default models (one per line)", type="linelist", default=[])
    parser.addini(
        "llmeval_baseline_arm",
        "Arm the other arms are compared with (default: each task's first arm)",
    )
    parser.addini("llmeval_limit", "Default --limit", default="")
    parser.addini(
        "llmeval_gates",
        "Gates, one per line: '[task:]metric op value'",
        type="linelist",
        default=[],
    )
    parser.addini("llmeval_seed", "Default --llmeval-seed", default="0")
    parser.addini(
        "llmeval_data_dir", "Offline data directory, relative to the ini file", default=""
    )
    parser.addini("llmeval_batch_size", "Default --llmeval-batch-size", default="")
    parser.addini("llmeval_strict", "Default --llmeval-strict", type="bool", default=False)


PATH_OPTIONS = ("--llmeval-data-dir", "--llmeval-cache-dir", "--model", "--compare-backend")


def warn_split_path_options(config: pytest.Config) -> None:
    """Warn about `--llmeval-data-dir DIR` written with a space when DIR exists.

    pytest picks its rootdir (and so its ini file) before plugins add their options, and then
    reads an existing path after an unknown option as a test path: the rootdir can move to a
    common ancestor and the project's ini settings are lost. `--llmeval-data-dir=DIR` is safe.
    """
    args = [str(arg) for arg in config.invocation_params.args]
    for flag, value in zip(args, args[1:], strict=False):
        if flag in PATH_OPTIONS and Path(value).exists():
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(
                    f"'{flag} {value}': pytest may take {value!r} for a test path when it "
                    f"chooses its rootdir (now {config.rootpath}); write '{flag}={value}'"
                ),
                stacklevel=2,
            )


def read_settings(config: pytest.Config) -> Settings:
    """Parse the options once (raises pytest.UsageError with the fix for bad values)."""
    try:
        aliases = load_user_aliases(config.rootpath)
        names = config.option.llmeval_models or config.getini("llmeval_models") or [DEFAULT_MODEL]
        models = resolve_models(names, aliases)
        compare = config.option.llmeval_compare
        reference = resolve_model(compare, aliases) if compare else None
    except UnknownModel as exc:
        raise pytest.UsageError(str(exc)) from None
    gates = _gates(config)
    return Settings(
        baseline_arm=_baseline_arm(config, [spec.name for spec in models]),
        sampling=read_sampling(config),
        smoke=read_smoke(config),
        vram_check=read_vram_check(config),
        models=models,
        reference=reference,
        aliases=aliases,
        limit=_int_option(config.option.llmeval_limit, config.getini("llmeval_limit"), "--limit"),
        seed=_int_option(
            config.option.llmeval_seed, config.getini("llmeval_seed"), "--llmeval-seed"
        )
        or 0,
        data_dir=_data_dir(config),
        batch_size=_batch_size(config),
        device=config.option.llmeval_device,
        dtype=config.option.llmeval_dtype,
        gates=gates,
        strict=bool(config.option.llmeval_strict or config.getini("llmeval_strict")),
        allow_missing=bool(
            config.option.llmeval_allow_missing or config.getini("llmeval_allow_missing")
        ),
        invariance_check=_int_option(
            config.option.llmeval_invariance_check,
            config.getini("llmeval_invariance_check"),
            "--llmeval-invariance-check",
        )
        or 0,
        batch_invariant=bool(
            config.option.llmeval_batch_invariant or config.getini("llmeval_batch_invariant")
        ),
        progress_s=_progress(config),
        cache_mode=_cache_mode(config),
        cache_dir=_cache_dir(config),
        pin_gpus=_pin_gpus(config),
        report_path=Path(config.option.llmeval_report).resolve()
        if config.option.llmeval_report
        else None,
    )


# The defaults given to parser.addini above, to tell whether a project configured llmeval.
_INI_DEFAULTS: dict[str, object] = {
    "llmeval_progress": "30",
    "llmeval_cache": "on",
    "llmeval_cache_dir": "",
    "llmeval_models": [],
    "llmeval_baseline_arm": "",
    "llmeval_limit": "",
    "llmeval_gates": [],
    "llmeval_seed": "0",
    "llmeval_data_dir": "",
    "llmeval_batch_size": "",
    "llmeval_strict": False,
    "llmeval_allow_missing": False,
    "llmeval_pin_gpus": "auto",
    "llmeval_invariance_check": "",
    "llmeval_batch_invariant": False,
    **FIT_INI_DEFAULTS,
}


def uses_llmeval(config: pytest.Config) -> bool:
    """Whether the command line or the ini file shows an eval run (any llmeval option or
    ini key set). Decisions made before collection (GPU pinning, the xdist scheduler, the
    controller at configure time) depend on it."""
    used_option = any(
        value not in (None, False, [])
        for name, value in vars(config.option).items()
        if name.startswith("llmeval_")
    )
    used_ini = any(config.getini(name) != default for name, default in _INI_DEFAULTS.items())
    return used_option or used_ini


def _pin_gpus(config: pytest.Config) -> bool:
    """Whether xdist workers get one GPU each.

    `auto` pins only when the session shows it is an eval run (`uses_llmeval`): pinning is
    decided before collection, and a plain test suite run with -n must be left as it is.
    """
    mode = config.option.llmeval_pin_gpus or str(config.getini("llmeval_pin_gpus")).strip()
    if mode in ("on", "off"):
        return mode == "on"
    return uses_llmeval(config)


def _progress(config: pytest.Config) -> float:
    raw = config.option.llmeval_progress
    if raw is None:
        try:
            raw = float(str(config.getini("llmeval_progress")).strip() or "30")
        except ValueError:
            raise pytest.UsageError("ini llmeval_progress must be a number of seconds") from None
    if raw < 0:
        raise pytest.UsageError(f"--llmeval-progress must be >= 0, got {raw}")
    return float(raw)


def _cache_mode(config: pytest.Config) -> CacheMode:
    mode = config.option.llmeval_cache or str(config.getini("llmeval_cache")).strip() or "on"
    if mode not in ("on", "off", "read"):
        raise pytest.UsageError(f"llmeval_cache must be on, off or read, got {mode!r}")
    return mode  # type: ignore[return-value]


def _cache_dir(config: pytest.Config) -> Path:
    if config.option.llmeval_cache_dir:
        return Path(config.option.llmeval_cache_dir).expanduser().resolve()
    ini = str(config.getini("llmeval_cache_dir")).strip()
    return (config.rootpath / (ini or ".llmeval_cache")).resolve()


def _baseline_arm(config: pytest.Config, models: list[str]) -> str | None:
    name = config.option.llmeval_baseline_arm or config.getini("llmeval_baseline_arm") or None
    # Prompt variants make more arms (`<model>-<variant>`; with one model the variant alone),
    # known only once tasks are collected: here only a name no arm can have is refused.
    if name is not None and len(models) > 1 and not any_arm_of(name, models):
        raise pytest.UsageError(
            f"--llmeval-baseline-arm {name}: no such arm; give one of the run's arms "
            f"(the --model names, or <model>-<variant>): {', '.join(models)}"
        )
    return name


def _gates(config: pytest.Config) -> list[Gate]:
    try:
        ini = [parse_gate(text, "ini") for text in config.getini("llmeval_gates")]
        cli = [parse_gate(text, "cli") for text in config.option.llmeval_gates or []]
    except GateError as exc:
        raise pytest.UsageError(str(exc)) from None
    return ini + cli


def _int_option(cli: int | None, ini: str, name: str) -> int | None:
    if cli is not None:
        value = cli
    elif str(ini).strip():
        try:
            value = int(str(ini).strip())
        except ValueError:
            raise pytest.UsageError(
                f"ini value for {name} must be an integer, got {ini!r}"
            ) from None
    else:
        return None
    if value < 0:
        raise pytest.UsageError(f"{name} must be >= 0, got {value}")
    return value


def _batch_size(config: pytest.Config) -> int | None:
    raw = config.option.llmeval_batch_size or config.getini("llmeval_batch_size") or "auto"
    if str(raw).strip().lower() == "auto":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise pytest.UsageError(
            f"--llmeval-batch-size takes a number or 'auto', got {raw!r}"
        ) from None
    if value < 1:
        raise pytest.UsageError(f"--llmeval-batch-size must be >= 1, got {value}")
    return value


def _data_dir(config: pytest.Config) -> Path | None:
    if config.option.llmeval_data_dir:
        return Path(config.option.llmeval_data_dir).expanduser().resolve()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser().resolve()
    ini = str(config.getini("llmeval_data_dir")).strip()
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return (base / Path(ini).expanduser()).resolve()
    return None


def check_report_paths(config: pytest.Config, settings: Settings) -> None:
    """Raise a one-line UsageError when a report file of this run cannot be written: its
    directory cannot be created (under a file, unwritable) or its path is a directory.

    Called before any model work; a bad path found at the end would cost the whole run.
    """
    others = [
        (option, str(given), example)
        for option, dest, example in (
            ("--junitxml", "xmlpath", "junit.xml"),
            ("--html", "htmlpath", "report.html"),
        )
        if (given := getattr(config.option, dest, None))
    ]
    shown = str(config.option.llmeval_report)
    problem = report_paths_problem(settings.report_path, shown, config.rootpath, others)
    if problem is not None:
        raise pytest.UsageError(problem)
