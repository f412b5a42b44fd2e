"""Provenance per arm: what one arm of a task was (model, backend, identity, prompt variant,
patch payload, data), gathered for report.json from facts the controller already holds.

The run-wide facts (git commit and dirty flag, plugin and library versions, machine) are at
the top of the report once; an arm's entry here plus those is its full provenance. Pure: no
pytest, no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmeval.analyze.compare import arm_of
from pytest_llmeval.analyze.hardware import ModelLoad
from pytest_llmeval.analyze.record import SCHEMA_CONFIG, ItemRecord, TaskInfo
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.redact import redact


@dataclass
class ArmProvenance:
    """What one arm of a task ran: together with the report's run-wide `git`, `versions` and
    `machine`, the arm's full provenance (equal entries: the same arm)."""

    __pydantic_config__ = SCHEMA_CONFIG

    model: str
    """The model's name as given with `--model` (or its `ARM=` name); for a prompt variant
    arm the model it ran on."""
    backend: str | None
    """The backend that ran it (`transformers`, `vllm`, `openai`, `callable`); None when the
    model is not among the run's models (a record of an earlier selection)."""
    model_id: str | None
    """What the backend loads or calls (Hub id, local directory, API model, `module:function`),
    key-like URL query values masked as `***`; None as for `backend`."""
    identity_sha256: str | None
    """SHA-256 (hex) of the backend identity the arm's cache keys were made with (model id,
    weights fingerprint, dtype, chat template and tokenizer hashes, versions, devices, server
    facts, arm state), as `model_loads[].identity_sha256`; None when no process made a cache
    key for the model (every item failed before generation) or processes differ (then see
    `model_loads`)."""
    variant: str | None
    """The task's prompt variant the arm ran (`Task(variants=...)`); None: the task's single
    prompt."""
    prompt_sha256: str | None
    """SHA-256 (hex) of the arm's prompt as declared: the variant's (else the task's) `sha256`
    in `declaration` (templates and few-shot rows, or the prompt function's name); None for
    hand-written tests."""
    patch_sha256: str | None
    """SHA-256 (hex) of the arm's patch payload file (an alias's `patch` key), as sent to its
    setup and put in its cache key (`model_loads[].arm_state`); None without a patch (or when
    processes hashed different bytes: the file changed during the run)."""
    data_sha256: str | None
    """SHA-256 (hex) of the task's rows used (the task's `data.sha256`, shared by its arms);
    None when unknown (hand-written tests)."""


def arms_provenance(
    task: str,
    arms: Sequence[str],
    info: TaskInfo | None,
    records: Sequence[ItemRecord],
    models: Sequence[ModelSpec],
    loads: Sequence[ModelLoad],
) -> dict[str, ArmProvenance]:
    """Per arm of `task` (as in its `models`): the arm's provenance."""
    first: dict[str, ItemRecord] = {}
    for one in records:
        if one.task == task:
            first.setdefault(arm_of(one), one)
    specs = {spec.name: spec for spec in models}
    declaration = info.declaration if info is not None else None
    data_sha256 = info.data.sha256 if info is not None and info.data is not None else None
    provenance = {}
    for arm in arms:
        record = first.get(arm)
        model = record.model if record is not None else arm
        variant = record.variant if record is not None else None
        spec = specs.get(model)
        prompt = None
        if declaration is not None:
            declared = declaration.variants.get(variant) if variant else declaration.prompt
            prompt = declared.sha256 if declared is not None else None
        mine = [load for load in loads if load.model == model]
        identities = {load.identity_sha256 for load in mine if load.identity_sha256}
        patches = {patch for patch in map(_patch_of, mine) if patch is not None}
        provenance[arm] = ArmProvenance(
            model=model,
            backend=spec.backend if spec is not None else None,
            model_id=redact(spec.model_id) if spec is not None else None,
            identity_sha256=_one(identities),
            variant=variant,
            prompt_sha256=prompt,
            patch_sha256=_one(patches),
            data_sha256=data_sha256,
        )
    return provenance


def _patch_of(load: ModelLoad) -> str | None:
    """The patch hash a process applied for the model (None without arm state or patch)."""
    patch = (load.arm_state or {}).get("patch_sha256")
    return None if patch is None else str(patch)


def _one(values: set[str]) -> str | None:
    """The value every process reported, or None when none did or they differ."""
    return next(iter(values)) if len(values) == 1 else None
