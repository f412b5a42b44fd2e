"""Gates on best-of-n metrics: `maj@5>=0.4`, `pass@2>=0.5`, `mean@5`, `oracle@5`, `rerank@5`.

The `@k` names the candidates the gate was written for: `maj@5` on a task that drew 3
candidates per item is refused with the reason (its figure would be maj@3), and `pass@k`
needs k <= the candidates drawn.
"""

from __future__ import annotations

import re

from pytest_llmeval.analyze.metrics import Metrics

# Best-of-n metric -> the `Metrics` field holding it (pass@k: a dict by k).
SAMPLED: dict[str, str] = {
    "mean": "mean_at_n",
    "maj": "maj_at_n",
    "oracle": "oracle_at_n",
    "rerank": "rerank_at_n",
    "pass": "pass_at_k",
}
_NAME = re.compile(r"^(?P<kind>[a-z]+)@(?P<k>\d+)$")


def is_sampled_metric(metric: str) -> bool:
    """Whether `metric` is a best-of-n name such as `maj@5`."""
    match = _NAME.match(metric)
    return match is not None and match["kind"] in SAMPLED and int(match["k"]) >= 1


def sampled_value(
    metric: str, metrics: Metrics
) -> tuple[float | None, tuple[float, float] | None, str | None]:
    """The value of `metric` (e.g. `maj@5`) in `metrics`, its 95% interval, and why there is
    no value when there is none."""
    match = _NAME.match(metric)
    assert match is not None and is_sampled_metric(metric)
    kind, k = match["kind"], int(match["k"])
    drawn = metrics.samples_n
    if drawn is None:
        return None, None, f"{metric} needs sampled candidates; the task drew one per item"
    if kind == "pass":
        if k > drawn:
            return None, None, f"{metric} needs k <= the {drawn} candidates drawn per item"
        values, intervals = metrics.pass_at_k or {}, metrics.pass_at_k_ci95 or {}
        interval = intervals.get(str(k))
        return values.get(str(k)), _pair(interval), None
    if k != drawn:
        return None, None, f"{metric} asked, but the task drew {drawn} candidates per item"
    field = SAMPLED[kind]
    value = getattr(metrics, field)
    if value is None:
        return None, None, f"{metric}: no value (rerank needs Task(select=...))"
    return float(value), _pair(getattr(metrics, f"{field}_ci95")), None


def _pair(interval: list[float] | None) -> tuple[float, float] | None:
    return (interval[0], interval[1]) if interval else None
