"""The controller: one plugin object holding the run's state and the hooks that feed it.

Lives only in the process that owns the session's reports (the only process without xdist,
the xdist controller with it) and only in sessions that use pytest_llmeval (see
`pytest_llmeval.plugin.activate_controller`). Records arrive with the items' teardown
reports, once each; the report files are written from the first record on. Aggregation,
gates and the report itself are pure functions of `pytest_llmeval.analyze` and
`pytest_llmeval.report`; this object only gathers, calls them and writes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import TestReport

from pytest_llmeval.analyze.aggregate import summarize_run
from pytest_llmeval.analyze.compare import Compared, arm_of, compare_run
from pytest_llmeval.analyze.compare_gates import check_comparisons
from pytest_llmeval.analyze.cost import Price
from pytest_llmeval.analyze.gates import GateResult, check_run
from pytest_llmeval.analyze.hardware import ModelLoad, load_failures, load_skips
from pytest_llmeval.analyze.metrics import Metrics
from pytest_llmeval.analyze.record import ItemRecord, TaskInfo, from_json, task_info_from_json
from pytest_llmeval.baseline_option import read_baseline, with_baseline
from pytest_llmeval.declare.ids import is_eval_item, model_of
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.options import check_report_paths
from pytest_llmeval.report import runinfo
from pytest_llmeval.report.baseline_summary import baseline_legend, baseline_table
from pytest_llmeval.report.compare_summary import terminal_section, write_comparison_table
from pytest_llmeval.report.envelope import RunFacts, RunReport, WorkerInfo
from pytest_llmeval.report.html import summary_html
from pytest_llmeval.report.models_table import (
    MODELS_CSV,
    model_rows,
    models_markdown,
    write_models_csv,
)
from pytest_llmeval.report.progress import Progress
from pytest_llmeval.report.sampling_summary import sampling_table, write_samples_parquet
from pytest_llmeval.report.score_breakdown import terminal_lines
from pytest_llmeval.report.summary import summary_markdown, summary_table
from pytest_llmeval.report.writers import ReportWriter, write_agreement_table, write_items_parquet
from pytest_llmeval.run import records
from pytest_llmeval.run.logged_reports import log_error, log_gate
from pytest_llmeval.run.progress_lines import is_terminal, terminal_line
from pytest_llmeval.run.xdist_hooks import CRASH_ERROR, XdistHooks

PAYLOAD_ATTRIBUTE = "llmeval"
"""Attribute of an item's teardown report holding its records (plain JSON; crosses xdist)."""


class Controller:
    """Gathers records, model loads and workers; checks gates; writes the report files."""

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        prices: dict[str, Price],
        xdist: XdistHooks | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.prices = prices
        self.xdist = xdist
        self.saved = read_baseline(config)  # --llmeval-baseline: a usage error when unreadable
        self.run_id = runinfo.new_run_id()
        self.started_iso = runinfo.now_iso()
        self.started = time.time()
        self.records: list[ItemRecord] = []
        self.tasks: dict[str, TaskInfo] = {}
        self.loads: list[ModelLoad] = []
        self.workers: dict[str, WorkerInfo] = {}
        self.misses = 0
        self.total = 0
        self.collected: list[str] = []  # xdist: the eval items of the collection
        self.crashes = 0  # xdist: workers that died
        self.gate_results: list[GateResult] = []
        self._compared: Compared | None = None
        # summaries() by what it was computed from: the bootstraps of task metrics cost seconds
        # over thousands of items, and the session end asks for them several times.
        self._summaries: tuple[tuple[int, int, tuple[int, ...]], dict[Any, Metrics]] | None = None
        # Per task: the first worker's rows hash, and why workers disagree (if they do).
        self.data_seen: dict[str, tuple[str | None, str]] = {}
        self.data_conflicts: dict[str, str] = {}
        self.writer: ReportWriter | None = None
        self.progress = Progress(
            interval_s=settings.progress_s,
            total=lambda: self.total,
            shares=self._shares,
        )

    @property
    def report_path(self) -> Path:
        """Where report.json goes (items.jsonl and the other files beside it)."""
        default = self.config.rootpath / "reports" / self.run_id / "report.json"
        return self.settings.report_path or default

    # ---- gathering ---------------------------------------------------------------------

    def add_task(self, task: TaskInfo, worker: str | None = None) -> None:
        """Keep what a worker said about a task (the first full account wins), and flag the
        task when two workers loaded different rows (another source, other content)."""
        known = self.tasks.get(task.name)
        if known is None or (known.gates is None and task.gates is not None):
            self.tasks[task.name] = task
        if task.data is None:
            return
        seen = f"{worker or 'main'} {task.origin} sha256 {task.data.sha256}"
        first = self.data_seen.setdefault(task.name, (task.data.sha256, seen))
        if first[0] != task.data.sha256 and task.name not in self.data_conflicts:
            self.data_conflicts[task.name] = f"workers loaded different rows: {first[1]}; {seen}"

    def add(self, record: ItemRecord) -> None:
        """Keep one finished record, append it to items.jsonl at once, count progress."""
        if self.writer is None:
            self.writer = ReportWriter(self.report_path)
        self.records.append(record)
        self.writer.append_item(record)
        if record.source != "task":
            return  # the progress total counts eval items only
        self._show_as_bar()
        line = self.progress.add(record)
        if line:
            terminal_line(self.config, line)

    def progress_event(self, kind: str, model: str, facts: dict[str, Any]) -> None:
        """In process: the engine loads a model or starts a batch; say so when it calls for it."""
        self._show_as_bar()
        line = self.progress.event(kind, model, facts)
        if line:
            terminal_line(self.config, line)

    def _show_as_bar(self) -> None:
        # Decided when there is something to show: the terminal reporter starts after us.
        self.progress.bar = is_terminal(self.config)
        if self.progress.bar:
            self.progress.width = self.config.get_terminal_writer().fullwidth - 1

    def add_loads(self, loads: Sequence[ModelLoad], worker: str, info: WorkerInfo) -> None:
        """Keep a process's model loads and its GPU pinning."""
        self.loads.extend(loads)
        self.workers[worker] = info

    def count_collection(self, nodeids: Sequence[str]) -> None:
        """xdist: the eval items in a worker's collection (all workers collect the same)."""
        if not self.total:
            self.collected = [nodeid for nodeid in nodeids if is_eval_item(nodeid)]
            self.total = len(self.collected)

    def _shares(self) -> dict[str, int]:
        scheduler = self.xdist.scheduler if self.xdist else None
        return dict(scheduler.share_sizes) if scheduler else {}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """In-process runs: the number of eval items, for the progress line; and the report
        paths checked, for a session that showed it is an eval run only by its tasks."""
        self.collected = [item.nodeid for item in session.items if is_eval_item(item.nodeid)]
        self.total = len(self.collected)
        check_report_paths(self.config, self.settings)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        """xdist: the number of eval items, from a worker's collection."""
        self.count_collection(ids)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: TestReport) -> None:
        """Take the records of a finished item; turn a crashed worker's item into an error."""
        if str(report.when) == "???" and report.failed and is_eval_item(report.nodeid):
            # xdist's report for the item a crashed worker was running: the model work died,
            # not the answer, so it is an error (reported as a setup failure) with a record.
            report.when = "setup"
            path, _, name = report.nodeid.partition("::")
            report.location = (path, None, name)  # xdist's names the file only
            first_line = str(report.longrepr).strip().splitlines()[0] if report.longrepr else ""
            # Set by XdistHooks when the item crashed its worker while generated alone.
            error = getattr(report, CRASH_ERROR, None)
            if error is not None:
                report.longrepr = error
            else:
                error = f"worker crashed while running this item: {first_line}"
            models = [spec.name for spec in self.settings.models]
            node = getattr(report, "node", None)  # xdist puts the crashed worker here
            worker = getattr(node, "workerinput", {}).get("workerid")
            self.add(records.crashed(report.nodeid, error, models, worker))
            return
        if report.when == "call" and report.failed and is_eval_item(report.nodeid):
            # A miss is an eval item's failed call (ItemMiss); an xfailed one is no failure.
            self.misses += 1
        payload = getattr(report, PAYLOAD_ATTRIBUTE, None)
        if report.when == "teardown" and payload is not None:
            task = payload.get("task")
            if task:
                node = getattr(report, "node", None)  # xdist: the worker that sent it
                worker = getattr(node, "workerinput", {}).get("workerid")
                self.add_task(task_info_from_json(task), worker)
            for record in payload["records"]:
                self.add(from_json(record))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: keep a finished worker's model loads and its GPU; count crashed workers."""
        if error is not None:
            self.crashes += 1
        output = getattr(node, "workeroutput", {})
        if "llmeval_worker" in output:
            worker = str(node.workerinput["workerid"])
            loads = [ModelLoad(**load) for load in output.get("llmeval_loads", [])]
            self.add_loads(loads, worker, WorkerInfo(**output["llmeval_worker"]))

    # ---- end of the items: what never ran, gates ----------------------------------------

    def record_not_run(self) -> None:
        """xdist: once crashes used up `--max-worker-restart`, the selected eval items that
        never ran become errors saying so (with a record each, counted in the metrics), not
        a smaller selection. Called after the run loop, before the gates."""
        if not self.crashes:
            return
        value = self.config.getoption("maxworkerrestart", None)
        if value is not None:
            limit, flag = int(value), f"--max-worker-restart {value}"
        else:  # xdist's default: 4 restarts per worker
            limit = 4 * int(self.config.getoption("numprocesses", 0) or 0)
            flag = f"xdist's default --max-worker-restart {limit}"
        if self.crashes <= limit:
            return  # every crashed worker was replaced: whatever is missing is not ours
        done = {record.nodeid for record in self.records}
        crashes = f"{self.crashes} crash" + ("es" if self.crashes > 1 else "")
        reason = f"not run: xdist stopped replacing crashed workers ({crashes}, {flag})"
        for nodeid in self.collected:
            if nodeid not in done:
                models = [spec.name for spec in self.settings.models]
                self.add(records.not_run(nodeid, reason, models))
                log_error(self.config, nodeid, reason)

    def summaries(self) -> dict[tuple[str, str], Metrics]:
        """Per task x model: metrics, hardware and cost."""
        key = (len(self.records), len(self.loads), tuple(map(id, self.tasks.values())))
        if self._summaries is not None and self._summaries[0] == key:
            return dict(self._summaries[1])
        specs = [*self.settings.models, *filter(None, [self.settings.reference])]
        models = {spec.name: (spec.backend, spec.model_id) for spec in specs}
        summaries = summarize_run(self.records, self.tasks, self.loads, models, self.prices)
        if self.saved is not None:  # each task x arm against the saved run as well
            summaries = with_baseline(summaries, self.records, self.saved)
        self._summaries = (key, summaries)
        return dict(summaries)

    def compared(self) -> Compared:
        """Every arm against the baseline arm per task, with the item pairs behind them
        (computed again only when records arrived since)."""
        if self._compared is None or self._compared.records != len(self.records):
            # Arms in collection order (variants make arms no setting names).
            brackets = [model_of(nodeid) for nodeid in self.collected]
            order = [*dict.fromkeys(filter(None, brackets)), *self.settings.model_names]
            self._compared = compare_run(self.records, self.settings.baseline_arm, order)
        return self._compared

    def has_eval_work(self) -> bool:
        """Whether there is anything to gate or report: records, a task that could not run,
        or a command-line gate naming a task (which fails when that task made nothing).

        A session with none of these (only unit tests) gates nothing, whatever the ini file
        declares: ini gates are the project's standing policy for its eval runs.
        """
        named = any(g.origin == "cli" and g.task != "*" for g in self.settings.gates)
        return bool(self.records or self.tasks or named)

    def log_gates(self, session: pytest.Session) -> None:
        """Check the gates and report each like a test (called after the run loop).

        A gated task that ran no items (its data missing, its declaration broken) fails its
        gates with the reason, unless `--llmeval-allow-missing` excuses missing data.
        """
        if not self.has_eval_work():
            return
        declared = {name: info.gates for name, info in self.tasks.items()}
        # Groups of hand-written tests are reported, not gated: each test is its own verdict.
        gated = {(r.task, arm_of(r)) for r in self.records if r.source == "task"}
        summaries = {key: m for key, m in self.summaries().items() if key in gated}
        no_data = {name: i.no_data for name, i in self.tasks.items() if i.no_data is not None}
        # A task none of whose items ran (each skipped: its models did not fit their GPUs)
        # checked nothing; its gates fail with why rather than pass unchecked.
        # (The models' own skip reasons reach the controller with their loads, which in
        # process come after the gates: the summary's SKIPPED lines and model_loads say them.)
        ran = {r.task for r in self.records}
        for name in self.tasks.keys() - ran - no_data.keys():
            no_data[name] = "every item was skipped (why: the SKIPPED lines of the llmeval summary)"
        # Missing data when allowed, and tasks for models this run lacks: not evaluated.
        allowed = self.settings.allow_missing
        excused = [
            n for n, i in self.tasks.items() if (i.data_missing and allowed) or i.models_absent
        ]
        self.gate_results = check_run(summaries, declared, self.settings.gates, no_data, excused)
        # Comparison gates (`delta_low(arm)>=-0.02`): each candidate arm against the baseline.
        arms, partial = self.compared(), {task: m.partial for (task, _), m in summaries.items()}
        self.gate_results += check_comparisons(
            arms.comparisons, arms.arms, arms.baselines, declared, self.settings.gates, partial
        )
        # Workers that scored different rows: no figure of that task can be trusted.
        self.gate_results = [
            replace(g, passed=False, reason=self.data_conflicts[g.task])
            if g.task in self.data_conflicts
            else g
            for g in self.gate_results
        ]
        # Gates are reported as tests; count them so progress ends at 100%, not 110%.
        session.testscollected += len(self.gate_results)
        for gate in self.gate_results:
            log_gate(self.config, gate)

    # ---- session end: exit status and files ------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Decide the exit status, then build, hook-edit and write the report files."""
        if not self.has_eval_work():
            return
        if (
            not self.settings.strict
            and session.exitstatus == pytest.ExitCode.TESTS_FAILED
            and session.testsfailed == self.misses
            # A run cut short (-x, --maxfail) checked no gates: it must not pass.
            and not (session.shouldfail or session.shouldstop)
        ):
            # Only wrong answers failed: each item tells its truth, the gates decide the run.
            session.exitstatus = pytest.ExitCode.OK
        if self.data_conflicts and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        facts = RunFacts(
            run_id=self.run_id,
            started_iso=self.started_iso,
            started=self.started,
            settings=self.settings,
            records=self.records,
            tasks=self.tasks,
            loads=self.loads,
            workers=self.workers,
            summaries=self.summaries(),
            gate_results=self.gate_results,
            data_conflicts=self.data_conflicts,
            comparisons=self.compared().comparisons,
        )
        hook = self.config.hook
        report: RunReport = hook.pytest_llmeval_generate_report(
            config=self.config, facts=facts, exitstatus=int(session.exitstatus)
        )
        hook.pytest_llmeval_update_report(config=self.config, report=report)
        self._write(report, facts)

    def _write(self, report: RunReport, facts: RunFacts) -> None:
        if self.writer is None:  # no records (every task lacked data): still a report
            self.writer = ReportWriter(self.report_path)
        folder = self.report_path.parent
        if write_agreement_table(self.records, folder / "agreement.parquet"):
            report.files["agreement"] = "agreement.parquet"
        if write_comparison_table(self.compared().pairs, folder / "comparison.parquet"):
            report.files["comparison"] = "comparison.parquet"
        if write_samples_parquet(self.records, folder / "samples.parquet"):
            report.files["samples"] = "samples.parquet"
        write_items_parquet(self.records, folder / "items.parquet")
        models = model_rows(report, self.records)
        if write_models_csv(models, folder / MODELS_CSV):
            report.files["models"] = MODELS_CSV
        summary = summary_markdown(report, facts.summaries, self.gate_results)
        summary += models_markdown(models)
        (folder / "summary.md").write_text(summary, encoding="utf-8")
        report.files.update(items_parquet="items.parquet", summary="summary.md")
        self.writer.write_report(report)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The llmeval summary table, the gates and where the report is."""
        if not self.has_eval_work():
            return
        terminalreporter.section("llmeval summary")
        for task, conflict in self.data_conflicts.items():
            terminalreporter.write_line(f"ERROR task {task}: {conflict}", red=True)
        for failure in load_failures(self.loads):
            terminalreporter.write_line(f"ERROR {failure}", red=True)
        for skip in load_skips(self.loads):  # --llmeval-vram-check: once per model
            terminalreporter.write_line(f"SKIPPED {skip}", yellow=True)
        terminalreporter.write_line(summary_table(self.summaries(), self.gate_results))
        against = baseline_table(self.summaries())
        if against and self.saved is not None:  # --llmeval-baseline: this run vs the saved one
            legend = baseline_legend(str(self.saved.folder))
            terminalreporter.write_line(f"\n{against}\n{legend}")
        own = terminal_lines(self.summaries())
        if own:  # components, task metrics, composites: the full table is in summary.md
            terminalreporter.write_line("\n" + "\n".join(own))
        sampled = sampling_table(self.summaries())
        if sampled:  # best-of-n tasks: random / majority / reranked / oracle side by side
            terminalreporter.write_line(f"\nSampled candidates per item:\n{sampled}")
        table_path = self.report_path.parent / "comparison.parquet"
        arms = self.compared()
        for line in terminal_section(arms.comparisons, arms.pairs, table_path):
            terminalreporter.write_line(line)
        for gate in self.gate_results:
            terminalreporter.write_line(f"{gate.name}: {gate.describe()}")
        terminalreporter.write_line(f"report: {self.report_path}")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: Any
    ) -> None:
        """pytest-html: the gates, metrics and arm comparison on top of the HTML report."""
        if self.has_eval_work():
            arms = self.compared()
            page = summary_html(self.summaries(), self.gate_results, arms.comparisons, arms.pairs)
            prefix.append(page)
