"""What one run is asked to do: models, item selection, gates, generation and cache settings.

Parsed once from the command line and ini (`pytest_llmeval.options`); plain data, so that the
worker side, the controller and the report builder read the same values without pytest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pytest_llmeval.analyze.gates import Gate
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation

CacheMode = Literal["on", "off", "read"]
"""on: read and write; off: neither (never touches the disk); read: read only, never write."""


@dataclass(frozen=True)
class SamplingOverride:
    """The command line's sampling settings for every task (None: the task's own)."""

    samples: int | None = None
    """`--llmeval-samples`: candidates per item (`Generation.n`)."""
    temperature: float | None = None
    """`--llmeval-temperature`."""
    top_p: float | None = None
    """`--llmeval-top-p`."""

    def apply(self, generation: Generation) -> Generation:
        """`generation` with the overrides given; its `problem` says when the result cannot
        run (e.g. n > 1 with greedy decoding)."""
        changes: dict[str, Any] = {}
        if self.samples is not None:
            changes["n"] = self.samples
        if self.temperature is not None:
            changes["temperature"] = self.temperature
        if self.top_p is not None:
            changes["top_p"] = self.top_p
        return replace(generation, **changes) if changes else generation


@dataclass(frozen=True)
class Settings:
    """The run's settings after command line, ini and defaults were merged."""

    models: list[ModelSpec]
    limit: int | None
    seed: int
    data_dir: Path | None
    batch_size: int | None
    device: str | None
    dtype: str | None
    gates: list[Gate] = field(default_factory=list)
    strict: bool = False
    report_path: Path | None = None
    pin_gpus: bool = True
    reference: ModelSpec | None = None
    aliases: dict[str, ModelSpec] = field(default_factory=dict)
    progress_s: float = 30.0
    cache_mode: CacheMode = "on"
    cache_dir: Path = Path(".llmeval_cache")
    allow_missing: bool = False
    """A gated task whose data is missing has its gates reported as not evaluated, not failed."""
    invariance_check: int = 0
    """Items per task x model generated again alone to check batch invariance (0: none)."""
    batch_invariant: bool = False
    """Batch only prompts of equal token length (no padding), where the backend counts tokens."""
    baseline_arm: str | None = None
    """`--llmeval-baseline-arm`: the arm every other arm is compared with (None: the first)."""
    sampling: SamplingOverride = field(default_factory=SamplingOverride)
    """`--llmeval-samples`, `--llmeval-temperature`, `--llmeval-top-p`."""
    smoke: bool = False
    """`--llmeval-smoke`: each model tried on one item per task before the long run."""
    vram_check: bool = True
    """`--llmeval-vram-check`: skip a local GPU model whose estimate exceeds free memory."""

    @property
    def model_names(self) -> list[str]:
        """The names of the run's model arms, in `--model` order."""
        return [spec.name for spec in self.models]
