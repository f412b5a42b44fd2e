"""A task's declaration and its data's origin as the report keeps them (`TaskDeclaration`,
`DataOrigin`): plain JSON, hashed where the content is long (few-shot rows, the rows used)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_llmeval.analyze.record import (
    DataOrigin,
    GenerationInfo,
    PromptInfo,
    TaskDeclaration,
)
from pytest_llmeval.declare.data import LoadedRows, RowError
from pytest_llmeval.declare.task import ChatPrompt, DataSource, Generation, Task


def rows_sha256(rows: Iterable[Mapping[str, Any] | RowError]) -> str:
    """SHA-256 of rows as canonical JSON (sorted keys), one per line, in the given order."""
    digest = hashlib.sha256()
    for row in rows:
        value: Any = {"row_error": row.message} if isinstance(row, RowError) else dict(row)
        line = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def data_origin(source: DataSource, loaded: LoadedRows, chosen: Sequence[int]) -> DataOrigin:
    """Where `loaded` came from, with the hash of the rows `chosen` by `--limit`."""
    hub = loaded.kind == "hub"
    return DataOrigin(
        kind=loaded.kind,
        path=loaded.path,
        hub=source.hub if hub else None,
        config=source.config if hub else None,
        revision=source.revision if hub else None,
        split=loaded.split,
        rows=len(loaded.rows),
        rows_used=len(chosen),
        sha256=rows_sha256(loaded.rows[index] for index in chosen),
    )


def declaration(task: Task, generation: Generation | None = None) -> TaskDeclaration:
    """The report's view of a (valid) task declaration; `generation`: the settings it ran
    with when the command line overrode the task's own."""
    labels = scorer_labels(task.scorer)
    prompts = {name: _prompt(prompt) for name, prompt in task.prompts().items()}
    return TaskDeclaration(
        description=task.description,
        prompt=next(iter(prompts.values())),
        generation=_generation(generation or task.generation),
        target=task.target if isinstance(task.target, str) else _qualname(task.target),
        scorer=task.scorer if isinstance(task.scorer, str) else _name(task.scorer),
        scorer_options={"labels": labels} if labels is not None else {},
        labels=labels,
        label_field=task.label_field,
        pass_threshold=float(task.pass_threshold),
        gates=list(task.gates),
        reference=task.reference,
        variants={name: info for name, info in prompts.items() if name is not None},
        models=list(task.models) if task.models is not None else None,
        select=selector_name(task.select),
        pass_by=task.pass_by,
        metrics={name: dict(spec) for name, spec in (task.metrics or {}).items()},
        composites=dict(task.composites or {}),
    )


def selector_name(select: object) -> str | None:
    """A task's selector as the report names it: the built-in's name, a function's
    `module.qualname`, None without one."""
    if select is None or isinstance(select, str):
        return select
    return _qualname(select)


def scorer_labels(scorer: object) -> list[str] | None:
    """The label set of a classification scorer: its `labels` attribute (`scoring.label([...])`
    sets it; a custom scorer may too)."""
    found = getattr(scorer, "labels", None)
    if isinstance(found, list | tuple) and all(isinstance(x, str) for x in found):
        return list(found)
    return None


def _prompt(prompt: object) -> PromptInfo:
    if isinstance(prompt, ChatPrompt):
        shots = list(prompt.few_shot)
        templates = {"system": prompt.system, "user": prompt.user, "answer": prompt.answer}
        return PromptInfo(
            kind="chat",
            system=prompt.system,
            user=prompt.user,
            answer=prompt.answer,
            few_shot=len(shots),
            few_shot_sha256=rows_sha256(shots) if shots else None,
            function=None,
            sha256=rows_sha256([{**templates, "few_shot": [dict(row) for row in shots]}]),
        )
    name = _qualname(prompt)
    digest = rows_sha256([{"function": name}])
    return PromptInfo("function", None, None, None, 0, None, name, digest)


def _generation(generation: Generation) -> GenerationInfo:
    settings = generation.as_dict()
    known = (
        "max_new_tokens", "temperature", "top_p", "stop", "seed", "top_k", "repetition_penalty",
        "n",
    )  # fmt: skip
    return GenerationInfo(
        max_new_tokens=settings["max_new_tokens"],
        temperature=settings["temperature"],
        top_p=settings["top_p"],
        stop=list(settings["stop"]),
        seed=settings["seed"],
        top_k=settings["top_k"],
        repetition_penalty=settings["repetition_penalty"],
        n=settings["n"],
        other={k: v for k, v in settings.items() if k not in known},
    )


def _name(function: object) -> str:
    return str(getattr(function, "__name__", None) or _qualname(function))


def _qualname(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}" if module else str(name)
