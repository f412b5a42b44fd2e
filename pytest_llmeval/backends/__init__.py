"""Backends behind one protocol, registered by name with lazy factories.

A backend turns a batch of chat requests into generations. Factories are imported only when a
model of that backend is first needed, so importing the plugin never imports torch; a missing
optional dependency becomes `BackendUnavailable` with a one-line install hint.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.seeds import sample_seed
from pytest_llmeval.declare.task import Generation, Message


class BackendError(RuntimeError):
    """A backend could not load or generate; items that needed it become errors."""


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """An error's text on one line (libraries raise multi-line messages; an item error is
    shown on one), whitespace collapsed and cut at `limit` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PromptRefused(BackendError):
    """One request's prompt cannot be served: it does not fit the model's context (checked
    before batching, `context.PromptTooLong`, or refused by the server,
    `openai_refusal.context_refusal`). That item's error, not the model's: the smoke run
    (run/smoke.py) does not count it against the model."""


class BackendUnavailable(BackendError):
    """A backend's optional dependency is missing; the message is the install hint."""


class BatchPartiallyFailed(BackendError):
    """Some requests of a batch failed; `results` holds, in request order, each request's
    GenerationResult or its exception. The engine keeps the successes (they are never asked
    for again). The failures are final, unless `retry_alone`: then the engine tries each
    failed request once more in a batch of its own (a backend that retried already, like
    the HTTP one, leaves it False)."""

    def __init__(
        self, results: Sequence[GenerationResult | Exception], *, retry_alone: bool = False
    ) -> None:
        self.results = list(results)
        self.retry_alone = retry_alone
        errors = [r for r in results if isinstance(r, Exception)]
        # A batch of one reads as that request's own error.
        prefix = "" if len(results) == 1 else f"{len(errors)} of {len(results)} requests failed; "
        super().__init__(f"{prefix}{errors[0]}" if errors else "no request failed")


@dataclass(frozen=True)
class GenerationRequest:
    """One item's request: its chat messages and generation settings, and for sampled
    decoding which item and which sample it is (they decide its `seed`)."""

    messages: list[Message]
    settings: Generation
    item_id: str = ""
    sample_index: int = 0

    @property
    def seed(self) -> int | None:
        """The seed of this one generation when sampling (None for greedy decoding): derived
        from the task seed, the item id and the sample index, never from the batch."""
        if self.settings.greedy:
            return None
        return sample_seed(self.settings.seed, self.item_id, self.sample_index)


@dataclass(frozen=True)
class GenerationResult:
    """One item's generation. `latency_s` is the item's own (see `latency_method`), not the
    batch wall time; batch fields let the controller compute throughput without double counts.

    `tokens_out` counts the tokens the model generated, the end-of-sequence/stop token not
    included, on every backend; `tokens_in` and `tokens_out` are None when the backend cannot
    count tokens (never a word count standing in for tokens). A `cached` result carries the
    figures of the run that generated it."""

    text: str
    prompt: str
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float
    finish_reason: str
    batch_id: str
    batch_size: int
    batch_wall_s: float
    latency_method: str
    cached: bool = False
    # Filled by the engine from its energy meter (None with a reason when not measurable).
    energy_j: float | None = None
    cpu_energy_j: float | None = None
    energy_reason: str | None = None
    energy_method: str | None = None
    batch_energy_j: float | None = None
    batch_avg_w: float | None = None
    batch_peak_w: float | None = None
    # What the backend actually asked the engine or server for (see `ItemRecord.decoding`).
    decoding: dict[str, Any] | None = None
    # Pad tokens in this request's row of a padded batch (None: the backend does not pad).
    pad_tokens: int | None = None
    # Mean log-probability of the generated tokens under the unwarped distribution (None: the
    # backend gives none); what the `logprob` candidate selector ranks by.
    mean_logprob: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON of every field, as stored in the cache and in items.jsonl."""
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any], *, cached: bool) -> GenerationResult:
        """A result read back from `as_dict` output; unknown keys (from other versions) are
        dropped and `cached` says whether it came from the cache."""
        known = {name: stored[name] for name in cls.__dataclass_fields__ if name in stored}
        return cls(**{**known, "cached": cached})


Finished = list[tuple[int, GenerationResult | Exception]]
"""What a streaming backend's `generate_stream(requests)` yields, as requests finish: pairs of
(index into `requests`, its result or its final error), one list per engine step or response
(requests that finished together). The backend submits requests in order and has at most
`max_in_flight` of them submitted and unfinished at any time; when the stream is closed early
it withdraws those. Results leave `batch_id`, `batch_size` and `batch_wall_s` to the engine,
which stamps the window each result finished in."""


# Where a backend's model sits, for the energy meters: CUDA ordinals of this process, "cpu",
# or None for a remote backend (an API server, a Python callable): no local energy is its own.
EnergyDevices = tuple[int, ...] | Literal["cpu"] | None


def devices_of(device: str) -> EnergyDevices:
    """The energy devices of a torch device string: "cuda" / "cuda:N" -> (N,) (0 for "cuda",
    torch's current device unless changed), anything else ("cpu", "mps") -> "cpu"."""
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return "cpu"
    return (int(index) if index else 0,)


class Backend(Protocol):
    """What the engine needs of a backend; one instance stays resident for the session.

    Creating a backend must be cheap (a tokenizer at most): the model itself loads in `load()`,
    which the engine calls before the first batch it generates (in its own energy window), so
    a run served entirely from the cache loads no model. A user's backend may lack `load()`
    and `energy_devices()` (then it loads inside its first batch and is metered on every GPU
    the process sees). A backend may also define `check_prompt(prompt, settings)`, raising a
    `BackendError` for a rendered prompt it cannot generate (the built-in local backends: one
    longer than the model's context, `backends/context.py`); the engine calls it before
    batching, so that item errors alone. A backend whose `identity()` names everything its
    `render` depends on (chat template, tokenizer files) sets `renders_from_identity = True`:
    the cache then keys its items by their messages and renders only the items it generates,
    so a run served from the cache needs no tokenizer (the transformers and vLLM backends do).
    A local backend may define `unload() -> bool | None`: release the weights (and GPU memory)
    before another model loads in a model sweep, returning whether its model object was freed
    (None: not checked); `load()` afterwards loads again. Without it (remote and callable
    backends) a model stays resident until `close()`.

    A backend that batches internally (vLLM, the HTTP backend's concurrency pool) may also
    define `generate_stream(requests)` and `max_in_flight` (see `Finished`): the engine then
    hands it a worker's whole share of alike requests at once instead of windows of batches,
    and commits each result to the cache as it arrives (`run/stream.py`).
    """

    spec: ModelSpec
    default_batch_size: int

    def identity(self) -> Mapping[str, Any]:
        """Plain JSON naming everything about this backend that changes outputs (model id,
        weights revision or fingerprint, dtype, chat template hash): part of the cache key."""

    def render(self, messages: list[Message]) -> str:
        """The prompt exactly as the model will see it."""

    def info(self) -> Mapping[str, Any]:
        """Plain-JSON facts for the report: identity, device, whether and how long the model
        took to load (`model_loads`, `load_time_s`)."""

    def load(self) -> None:
        """Load the model (weights, engine, CUDA graphs) now; idempotent; nothing for a remote
        backend. `generate` loads it too when nobody called this."""

    def energy_devices(self) -> EnergyDevices:
        """Where the model sits: the CUDA ordinals it occupies, "cpu", or None (remote)."""

    def generate(
        self, requests: Sequence[GenerationRequest], batch_id: str
    ) -> list[GenerationResult]:
        """Generate one batch (all requests share settings); results in request order."""

    def close(self) -> None:
        """Release the model (called once at session end)."""


# name -> (module, class, install hint)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "transformers": (
        "pytest_llmeval.backends.transformers_backend",
        "TransformersBackend",
        "pip install torch transformers accelerate gguf  (CPU-only: pip install torch --index-url https://download.pytorch.org/whl/cpu)",
    ),
    "vllm": (
        "pytest_llmeval.backends.vllm_backend",
        "VLLMBackend",
        "pip install vllm (needs a CUDA GPU)",
    ),
    "openai": (
        "pytest_llmeval.backends.openai_backend",
        "OpenAIBackend",
        "pip install requests",
    ),
    "callable": (
        "pytest_llmeval.backends.callable_backend",
        "CallableBackend",
        "the callable backend needs no extra package",
    ),
}


def registered_backends() -> list[str]:
    """The built-in backend names, sorted (what `--model <backend>:...` accepts)."""
    return sorted(_REGISTRY)


def create_backend(spec: ModelSpec, overrides: Mapping[str, Any]) -> Backend:
    """Instantiate the registered backend for `spec`; called once per model and process.

    The backend class's `options_type` (a frozen dataclass) is filled from `spec.options` (the
    alias's extra keys) and then from `overrides`, the command-line settings (`device`, `dtype`;
    None when not given), which win over the alias and are ignored where the backend has no such
    option. Raises `BackendError` for an unknown backend, an unknown option or a value of the
    wrong type, and `BackendUnavailable` (with the install hint) for a missing package.
    """
    # Imported here: options.py imports BackendError from this module.
    from pytest_llmeval.backends.options import parse_options

    if spec.backend not in _REGISTRY:
        raise BackendError(
            f"unknown backend {spec.backend!r} for model {spec.name!r}; "
            f"known backends: {', '.join(registered_backends())}"
        )
    module_name, class_name, hint = _REGISTRY[spec.backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {spec.backend!r} needs a missing package ({exc.name}): {hint}"
        ) from None
    backend_class = getattr(module, class_name)
    options = parse_options(backend_class.options_type, spec, overrides)
    backend: Backend = backend_class(spec, options)
    return backend
