"""Model names on the command line: built-in aliases, user aliases, Hub ids and local dirs.

`--model NAME` resolves to a `ModelSpec` here, before anything is loaded: an alias (built in,
or added under `[tool.llmeval.models]` in the project's pyproject.toml), `backend:rest` for an
explicit backend, a local directory, or a Hub id `org/name`. Anything else is a usage error
that lists the known aliases. `--model arm=SPEC` names the arm: SPEC resolves as above and
the arm's name replaces the spec's in ids, records and reports (`resolve_models`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_llmeval.declare.redact import redact

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_BACKEND = "transformers"


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: the name the user gave, the backend to run it, and what to load."""

    name: str
    backend: str
    model_id: str
    vram_gb: float | None = None
    revision: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    arm_state: ArmState | None = None

    def as_dict(self) -> dict[str, Any]:
        """Name, backend, model id, VRAM estimate and revision as plain JSON."""
        return {
            "name": self.name,
            "backend": self.backend,
            "model_id": self.model_id,
            "vram_gb": self.vram_gb,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class ArmState:
    """State an arm needs on the thing it runs against (a hooked server), from an alias's
    `setup`, `teardown`, `patch` and `lock` keys. The worker applies it around each of the
    arm's batches, under a lock file, so the state holds while, and only while, that arm's
    requests generate (`run/arm_state.py`)."""

    setup: str | None = None
    """`module:function` called with the arm before each of its batches (installs the patch)."""
    teardown: str | None = None
    """`module:function` called with the arm after each of its batches (removes it)."""
    patch: str | None = None
    """Absolute path of the patch payload file: its bytes go to `setup`, its SHA-256 into
    the arm's cache key and the report."""
    lock: str = "arm-state"
    """Name of the machine-wide lock held from setup to teardown: arms that share one
    server's state must share a lock (the default); arms on separate servers may not."""


ARM_KEYS = ("setup", "teardown", "patch", "lock")


# Approximate VRAM for bf16 weights plus ~10% for activations and KV cache at modest batch sizes.
BUILTIN_ALIASES: dict[str, tuple[str, float]] = {
    "smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", 0.5),
    "smollm2-360m": ("HuggingFaceTB/SmolLM2-360M-Instruct", 1.0),
    "smollm2-1.7b": ("HuggingFaceTB/SmolLM2-1.7B-Instruct", 4.0),
    "qwen0.5b": ("Qwen/Qwen2.5-0.5B-Instruct", 1.5),
    "qwen1.5b": ("Qwen/Qwen2.5-1.5B-Instruct", 4.0),
    "qwen3b": ("Qwen/Qwen2.5-3B-Instruct", 7.5),
    "qwen7b": ("Qwen/Qwen2.5-7B-Instruct", 17.0),
    "qwen14b": ("Qwen/Qwen2.5-14B-Instruct", 32.0),
    "qwen32b": ("Qwen/Qwen2.5-32B-Instruct", 70.0),
    "llama3-8b": ("meta-llama/Llama-3.1-8B-Instruct", 18.0),
    "mistral7b": ("mistralai/Mistral-7B-Instruct-v0.3", 16.0),
    "phi3-mini": ("microsoft/Phi-3.5-mini-instruct", 8.5),
    "gemma2-9b": ("google/gemma-2-9b-it", 20.0),
    "gpt-oss-20b": ("openai/gpt-oss-20b", 16.0),
}


class UnknownModel(ValueError):
    """The name is no alias, local directory or Hub id; the message lists the known aliases."""


def load_user_aliases(rootdir: Path) -> dict[str, ModelSpec]:
    """Aliases from `[tool.llmeval.models]` in `rootdir/pyproject.toml`, e.g.::

    [tool.llmeval.models.mymodel]
    model = "org/my-finetune"      # Hub id or local dir
    backend = "transformers"       # optional
    vram_gb = 16                   # optional
    revision = "main"              # optional
    setup = "pkg.mod:install"      # optional arm state (ArmState): setup, teardown, patch, lock
    """
    pyproject = rootdir / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    with pyproject.open("rb") as handle:
        table = tomllib.load(handle).get("tool", {}).get("llmeval", {}).get("models", {})
    aliases = {}
    for alias, entry in table.items():
        if not isinstance(entry, dict) or "model" not in entry:
            raise UnknownModel(
                f'{pyproject}: [tool.llmeval.models.{alias}] needs model = "<hub id or dir>"'
            )
        fixed = {"model", "backend", "vram_gb", "revision", *ARM_KEYS}
        extra = {k: v for k, v in entry.items() if k not in fixed}
        aliases[alias] = ModelSpec(
            name=alias,
            backend=str(entry.get("backend", DEFAULT_BACKEND)),
            model_id=str(entry["model"]),
            vram_gb=entry.get("vram_gb"),
            revision=entry.get("revision"),
            options=extra,
            arm_state=_arm_state(pyproject, alias, entry),
        )
    return aliases


def _arm_state(pyproject: Path, alias: str, entry: Mapping[str, Any]) -> ArmState | None:
    """The alias's arm-state keys checked (a usage error names the key and the fix), the
    patch path resolved against the pyproject's folder; None when it has none."""
    given = {key: entry[key] for key in ARM_KEYS if key in entry}
    if not given:
        return None
    where = f"{pyproject}: [tool.llmeval.models.{alias}]"
    for key, value in given.items():
        if not isinstance(value, str) or not value.strip():
            raise UnknownModel(f"{where} {key} must be a non-empty string, got {value!r}")
    for key in ("setup", "teardown"):
        module, sep, function = given.get(key, "m:f").partition(":")
        if not (sep and module and function):
            raise UnknownModel(f'{where} {key} = "package.module:function", got {given[key]!r}')
    if not re.fullmatch(r"[\w.-]+", given.get("lock", "x")):
        raise UnknownModel(f"{where} lock names a lock file: letters, digits, _ . - only")
    patch = None
    if "patch" in given:
        path = pyproject.parent / Path(given["patch"]).expanduser()
        if not path.is_file():
            raise UnknownModel(
                f"{where} patch: no such file {str(path)!r} (a path relative to {pyproject.parent})"
            )
        patch = str(path.resolve())
    if "setup" not in given and "teardown" not in given:
        raise UnknownModel(f"{where} has {', '.join(given)} but no setup or teardown to apply it")
    return ArmState(
        given.get("setup"), given.get("teardown"), patch, given.get("lock", "arm-state")
    )


def resolve_model(name: str, user_aliases: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    """Turn a `--model` value into a ModelSpec (raises UnknownModel with the known aliases)."""
    user_aliases = user_aliases or {}
    if not name.strip():
        raise UnknownModel("empty model name: pass --model with an alias, a Hub id or a directory")
    if name in user_aliases:
        return user_aliases[name]
    if name in BUILTIN_ALIASES:
        model_id, vram = BUILTIN_ALIASES[name]
        return ModelSpec(name=name, backend=DEFAULT_BACKEND, model_id=model_id, vram_gb=vram)
    backend, sep, rest = name.partition(":")
    if sep and backend.isidentifier() and rest:
        # Explicit backend: the backend itself parses the rest (e.g. openai:model@url).
        # Local-weights backends accept the same names as the default one (aliases, Hub ids).
        local = backend in (DEFAULT_BACKEND, "vllm")
        inner = resolve_model(rest, user_aliases) if local else None
        model_id = inner.model_id if inner else rest
        # The name is shown everywhere (node ids, records, reports): a key in its URL is not.
        return ModelSpec(name=redact(name), backend=backend, model_id=model_id)
    if Path(name).expanduser().is_dir():
        return ModelSpec(name=name, backend=DEFAULT_BACKEND, model_id=str(Path(name).expanduser()))
    if _looks_like_hub_id(name):
        return ModelSpec(name=name, backend=DEFAULT_BACKEND, model_id=name)
    known = sorted({*BUILTIN_ALIASES, *user_aliases})
    raise UnknownModel(
        f"unknown model {name!r}: not an alias, a local directory or a Hub id (org/name). "
        f"Known aliases: {', '.join(known)}. "
        "Add your own under [tool.llmeval.models] in pyproject.toml"
    )


ARM_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
"""What an arm's name may be: it goes into node ids (`gsm8k/test/0042[base]`) and `-k`."""


def split_arm_name(
    value: str, user_aliases: Mapping[str, ModelSpec] | None = None
) -> tuple[str | None, str]:
    """`(arm name, spec)` of a `--model` value: `base=qwen7b` -> `("base", "qwen7b")`.

    A spec may hold `=` of its own (a URL's query, a local directory `runs/lr=3e-4`), so the
    prefix names an arm only when it is a plain name (letters, digits, `_ . -`: no `:`, `/`,
    `@` or `?`, which every backend prefix, path or URL has before its first `=`) and the whole
    value is neither an alias nor an existing directory. Otherwise the name is None.
    """
    name, sep, spec = value.partition("=")
    if not sep or ARM_NAME.fullmatch(name) is None:
        return None, value
    if value in (user_aliases or {}) or value in BUILTIN_ALIASES or Path(value).is_dir():
        return None, value
    return name, spec


def resolve_models(
    values: Sequence[str], user_aliases: Mapping[str, ModelSpec] | None = None
) -> list[ModelSpec]:
    """The run's model arms from `--model` values, in order: `name=spec` names an arm (its
    name replaces the spec's), a bare spec is named as `resolve_model` names it. The same
    value given twice is one arm; two arms with one name raise UnknownModel."""
    specs: dict[str, ModelSpec] = {}
    for value in dict.fromkeys(values):
        name, text = split_arm_name(value, user_aliases)
        if name is not None and not text.strip():
            raise UnknownModel(f"--model {value}: give the model after '=' (e.g. {name}=qwen7b)")
        spec = resolve_model(text, user_aliases)
        if name is not None:
            spec = replace(spec, name=name)
        if spec.name in specs:
            raise UnknownModel(
                f"--model {value}: arm name {spec.name!r} is taken by an earlier --model; "
                f"give each arm its own name (e.g. --model other={text})"
            )
        specs[spec.name] = spec
    return list(specs.values())


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(part and not part.startswith(".") for part in parts)
