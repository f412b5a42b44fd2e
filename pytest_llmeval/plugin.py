"""The pytest plugin: collects tasks as items, runs them on resident backends, gates the exit.

Registered through the `pytest11` entry point. Importing it imports no torch or transformers,
and a session that collects no task and uses none of its options sees no change: no report,
no summary, the usual exit status.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any, Literal

import pytest
from _pytest.reports import TestReport

from pytest_llmeval import hookspec
from pytest_llmeval.analyze.cost import load_prices
from pytest_llmeval.analyze.gates import GateResult
from pytest_llmeval.backends import Backend, create_backend
from pytest_llmeval.controller import Run
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.declare.task import Task
from pytest_llmeval.options import add_options, read_settings, warn_split_path_options
from pytest_llmeval.report.html import item_extras, summary_html
from pytest_llmeval.report.progress import Progress
from pytest_llmeval.report.summary import summary_markdown, summary_table
from pytest_llmeval.report.writers import write_agreement_table, write_items_parquet
from pytest_llmeval.run.cache import GenerationCache
from pytest_llmeval.run.collect import items_for_task
from pytest_llmeval.run.engine import Engine
from pytest_llmeval.run.gpus import VARIABLE as GPU_VARIABLE
from pytest_llmeval.run.items import (
    RECORD_ATTRIBUTE,
    EvalItem,
    ItemError,
    ItemMiss,
    Upcoming,
    is_eval_item,
)

SETTINGS = pytest.StashKey[Settings]()
ENGINE = pytest.StashKey[Engine]()
RUN = pytest.StashKey[Run]()
ITEM_INDEX = pytest.StashKey[dict[str, int]]()
TOTAL = pytest.StashKey[int]()
GATE_PREFIX = "gates"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SETTINGS] = read_settings(config)
    warn_split_path_options(config)
    if config.pluginmanager.has_plugin("xdist"):
        from pytest_llmeval.run.xdist_hooks import XdistHooks

        hooks = XdistHooks(pin_gpus=config.stash[SETTINGS].pin_gpus)
        config.pluginmanager.register(hooks, "llmeval-xdist")
    if _is_controller(config):
        try:
            prices = load_prices(config.rootpath)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        run = Run(config.stash[SETTINGS], config.rootpath, prices=prices)
        config.stash[RUN] = run
        config.pluginmanager.register(RunReporter(config, run), "llmeval-run")
        if config.pluginmanager.has_plugin("html"):
            config.pluginmanager.register(HtmlSummary(run), "llmeval-html")


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


# ---- collection -------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> list[pytest.Item] | None:
    if not isinstance(obj, Task):
        return None
    config = collector.config
    return items_for_task(collector, obj, config.stash[SETTINGS], lambda: _engine(config))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    # After deselection (-k, --lf): remember each item's position to find the upcoming ones.
    session.config.stash[ITEM_INDEX] = {item.nodeid: i for i, item in enumerate(items)}


# ---- generation -------------------------------------------------------------------------


def _engine(config: pytest.Config) -> tuple[Engine, Upcoming]:
    if ENGINE not in config.stash:
        settings = config.stash[SETTINGS]
        cache = None
        if settings.cache_mode != "off":
            cache = GenerationCache(settings.cache_dir, settings.cache_mode)
        config.stash[ENGINE] = Engine(
            make_backend=lambda spec: _make_backend(config, spec),
            batch_size=settings.batch_size,
            cache=cache,
        )
    return config.stash[ENGINE], lambda item: _upcoming(config, item)


def _make_backend(config: pytest.Config, spec: ModelSpec) -> Backend:
    backend: Backend = config.hook.pytest_llmeval_make_backend(config=config, spec=spec)
    return backend


@pytest.hookimpl(trylast=True)
def pytest_llmeval_make_backend(config: pytest.Config, spec: ModelSpec) -> Backend:
    settings = config.stash[SETTINGS]
    return create_backend(spec, {"device": settings.device, "dtype": settings.dtype})


def _upcoming(config: pytest.Config, item: pytest.Item) -> Iterator[EvalItem]:
    """Eval items this process will run after `item`, lazily, so they can share its batch."""
    if not _is_controller(config):
        from pytest_llmeval.run.xdist_hooks import worker_upcoming

        for candidate in worker_upcoming(config, item.session):
            if isinstance(candidate, EvalItem):
                yield candidate
        return
    items = item.session.items
    index = config.stash.get(ITEM_INDEX, {}).get(item.nodeid)
    if index is None or items[index] is not item:
        return
    for position in range(index + 1, len(items)):
        candidate = items[position]
        if isinstance(candidate, EvalItem):
            yield candidate


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, TestReport, TestReport]:
    report = yield
    if isinstance(item, EvalItem) and item.record and call.when in ("setup", "call"):
        setattr(report, RECORD_ATTRIBUTE, dict(item.record))
        wants_html = bool(item.config.getoption("htmlpath", None))
        if wants_html and (call.when == "call" or not report.passed):
            extras = [*getattr(report, "extras", []), *item_extras(item.record)]
            setattr(report, "extras", extras)  # noqa: B010 - pytest-html's report attribute
    if call.excinfo is not None and isinstance(call.excinfo.value, ItemMiss | ItemError):
        # A known error in setup is its one-line message; a traceback would only be noise.
        # (Misses in the call phase are already one line: EvalItem.repr_failure.)
        report.longrepr = str(call.excinfo.value)
    return report


@pytest.fixture(scope="session")
def llmeval_backend(request: pytest.FixtureRequest) -> Backend:
    """The resident backend of the first `--model`, loaded once per session (and shared with
    the task items), for hand-written tests that call `generate` themselves."""
    engine, _ = _engine(request.config)
    return engine.backend(request.config.stash[SETTINGS].models[0])


# ---- session end: every process -------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Release models; an xdist worker hands its model-load records to the controller."""
    config = session.config
    engine = config.stash.get(ENGINE, None)
    if engine is None:
        return
    loads = engine.load_records()
    worker = {"cuda_visible_devices": os.environ.get(GPU_VARIABLE), "pid": os.getpid()}
    engine.close()
    if _is_controller(config):
        config.stash[RUN].loads.extend(loads)
        config.stash[RUN].workers[engine.worker] = worker
    else:
        config.workeroutput["llmeval_loads"] = loads  # type: ignore[attr-defined]
        config.workeroutput["llmeval_worker"] = worker  # type: ignore[attr-defined]


# ---- controller: records, gates, exit status, report -----------------------------------


class RunReporter:
    """Controller-only hooks around one `Run` (registered in pytest_configure)."""

    def __init__(self, config: pytest.Config, run: Run) -> None:
        self.config = config
        self.run = run
        self.progress = Progress(
            interval_s=run.settings.progress_s,
            total=self._total,
            shares=self._shares,
        )

    def _total(self) -> int:
        if TOTAL in self.config.stash:
            return self.config.stash[TOTAL]
        session = self.config.pluginmanager.get_plugin("dsession")
        collection = getattr(getattr(session, "sched", None), "collection", None)
        return len(collection) if collection else 0

    def _shares(self) -> dict[str, int]:
        """Items per xdist worker, from the up-front scheduler when it is in use."""
        session = self.config.pluginmanager.get_plugin("dsession")
        scheduler = getattr(session, "sched", None)
        return dict(getattr(scheduler, "share_sizes", {}) or {})

    def _count(self, record: dict[str, Any]) -> None:
        line = self.progress.add(record)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if line and reporter is not None:
            reporter.write_line(line)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.config.stash[TOTAL] = sum(isinstance(i, EvalItem) for i in session.items)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: TestReport) -> None:
        if str(report.when) == "???" and report.failed and is_eval_item(report.nodeid):
            # xdist's report for the item a crashed worker was running: the model work died,
            # not the answer, so it is an error (reported as a setup failure) with a record.
            report.when = "setup"
            self.run.add_record(self._crash_record(report), missed=False)
            self._count(self.run.records[-1])
            return
        record = getattr(report, RECORD_ATTRIBUTE, None)
        # An item's record is final after its call phase, or after a setup that did not pass.
        if record is not None and (
            report.when == "call" or (report.when == "setup" and not report.passed)
        ):
            self.run.add_record(record, missed=report.when == "call" and report.failed)
            self._count(record)

    def _crash_record(self, report: TestReport) -> dict[str, Any]:
        name = report.nodeid.split("::")[-1]
        item_id, _, model = name.partition("[")
        task = item_id.split("/")[0]
        known = next((r for r in self.run.records if r["task"] == task), {})
        first_line = str(report.longrepr).strip().splitlines()[0] if report.longrepr else ""
        return {
            "id": item_id,
            "nodeid": report.nodeid,
            "task": task,
            "model": model.rstrip("]") or self.run.settings.models[0].name,
            "outcome": "error",
            "error": f"worker crashed while running this item: {first_line}",
            "task_rows": known.get("task_rows"),
            "task_gates": known.get("task_gates"),  # None: unknown when it crashed first
        }

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield
        if self.run.records:
            gates = self.run.check_gates()
            # Gates are reported as tests; count them so progress ends at 100%, not 110%.
            session.testscollected += len(gates)
            for gate in gates:
                self._log_gate(gate)
        return result

    def _log_gate(self, gate: GateResult) -> None:
        """Report a gate like a test: terminal, JUnit, and the session's failure count."""
        # The threshold sits inside [...]: pytest's terminal turns '.' outside brackets into '::'.
        spec = gate.gate
        name = f"{gate.task}::{spec.metric}[{spec.op}{spec.threshold:g} {gate.model}]"
        facts = gate.as_dict()
        properties = [(f"llmeval.gate.{k}", facts[k]) for k in ("value", "n", "ci95", "partial")]
        verdict: Literal["passed", "failed"] = "passed" if gate.passed else "failed"
        phases: list[tuple[Literal["setup", "call", "teardown"], Literal["passed", "failed"]]] = [
            ("setup", "passed"),
            ("call", verdict),
            ("teardown", "passed"),
        ]
        for when, outcome in phases:
            failed_call = when == "call" and not gate.passed
            self.config.hook.pytest_runtest_logreport(
                report=TestReport(
                    nodeid=f"{GATE_PREFIX}::{name}",
                    location=(GATE_PREFIX, None, name),
                    keywords={},
                    outcome=outcome,
                    longrepr=gate.describe() if failed_call else None,
                    when=when,
                    user_properties=properties,
                )
            )

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: keep a finished worker's model-load records and its GPU."""
        output = getattr(node, "workeroutput", {})
        self.run.loads.extend(output.get("llmeval_loads", []))
        if "llmeval_worker" in output:
            self.run.workers[str(node.gateway.id)] = output["llmeval_worker"]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = self.run
        if not run.records:
            return
        if (
            not run.settings.strict
            and session.exitstatus == pytest.ExitCode.TESTS_FAILED
            and session.testsfailed == run.misses
            # A run cut short (-x, --maxfail) checked no gates: it must not pass.
            and not (session.shouldfail or session.shouldstop)
        ):
            # Only wrong answers failed: each item tells its truth, the gates decide the run.
            session.exitstatus = pytest.ExitCode.OK
        envelope = run.envelope(int(session.exitstatus))
        self.config.hook.pytest_llmeval_update_report(config=self.config, report=envelope)
        if run.writer is not None:
            folder = run.report_path.parent
            if write_agreement_table(run.records, folder / "agreement.parquet"):
                envelope["files"]["agreement"] = "agreement.parquet"
            write_items_parquet(run.records, folder / "items.parquet")
            summary = summary_markdown(envelope, run.summaries(), run.gate_results)
            (folder / "summary.md").write_text(summary, encoding="utf-8")
            envelope["files"].update(items_parquet="items.parquet", summary="summary.md")
            run.writer.write_report(envelope)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.run.records:
            return
        terminalreporter.section("llmeval summary")
        terminalreporter.write_line(summary_table(self.run.summaries(), self.run.gate_results))
        for gate in self.run.gate_results:
            terminalreporter.write_line(f"{gate.name}: {gate.describe()}")
        terminalreporter.write_line(f"report: {self.run.report_path}")


class HtmlSummary:
    """pytest-html hooks (registered only when pytest-html is installed)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: Any
    ) -> None:
        """The gates and metrics on top of the HTML report."""
        if self.run.records:
            prefix.append(summary_html(self.run.summaries(), self.run.gate_results))
