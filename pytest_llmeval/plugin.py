"""The pytest plugin (entry point `pytest11`): hook specs, options, item hooks and fixtures.

Two objects do the work: each process that runs items has a `Worker` (bound at configure
time: engine, cache, upcoming items), and the process that owns the reports has a
`Controller` (records, gates, report files), started the first time the session shows it
uses pytest_llmeval: an llmeval option or ini key (configure), a Task collected, an xdist
worker's collection with eval items, or a record arriving from a worker (the
`llmeval_backend` fixture). The xdist hooks (GPU pinning, up-front scheduling) are
registered only when options or ini keys show an eval run at configure time.

Importing this module imports no torch or transformers; a session that uses none of the
plugin's options, ini keys, tasks or fixtures registers nothing and sees no change.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import asdict
from typing import Any

import pytest
from _pytest.reports import TestReport

from pytest_llmeval import hookspec
from pytest_llmeval.analyze.cost import Price, load_prices
from pytest_llmeval.analyze.record import task_info_to_json, to_json
from pytest_llmeval.backends import Backend, create_backend
from pytest_llmeval.controller import PAYLOAD_ATTRIBUTE, Controller
from pytest_llmeval.declare import data
from pytest_llmeval.declare.ids import is_eval_item
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.settings import Settings
from pytest_llmeval.declare.task import ScoreFn, Task, TaskError
from pytest_llmeval.options import (
    add_options,
    check_report_paths,
    read_settings,
    uses_llmeval,
    warn_split_path_options,
)
from pytest_llmeval.report.envelope import RunFacts, RunReport, WorkerInfo, build_report
from pytest_llmeval.report.html import item_extras
from pytest_llmeval.run.client import CLIENT_CALLS, BackendClient, client_records
from pytest_llmeval.run.collect import TaskClaims, claimed_items
from pytest_llmeval.run.gpus import VARIABLE as GPU_VARIABLE
from pytest_llmeval.run.items import EvalItem, ItemError, ItemMiss, TaskProblemItem
from pytest_llmeval.run.progress_lines import WorkerLines
from pytest_llmeval.run.sweep import model_major, release_unneeded
from pytest_llmeval.run.worker import WORKER, Worker, worker_of
from pytest_llmeval.run.xdist_hooks import XdistHooks
from pytest_llmeval.run.xdist_queue import is_xdist_worker
from pytest_llmeval.score.scorers import BUILTIN_SCORERS

SETTINGS = pytest.StashKey[Settings]()
PRICES = pytest.StashKey[dict[str, Price]]()
RUNNING = pytest.StashKey[pytest.Item]()
CONTROLLER = pytest.StashKey[Controller]()
XDIST_HOOKS = pytest.StashKey[XdistHooks]()
CALL_OUTCOME = pytest.StashKey[str]()
TASK_CLAIMS = pytest.StashKey[TaskClaims]()
HUB_DECISION = "llmeval_hub"
"""workerinput key: the controller's decision whether the Hub is reachable (all workers follow)."""
CONTROLLER_NAME = "llmeval-controller"
XDIST_NAME = "llmeval-xdist"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the `pytest_llmeval_*` hook specs."""
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the `llmeval` option group and ini keys."""
    add_options(parser)


@pytest.hookimpl(tryfirst=True)  # the report paths are checked before pytest-html makes its dir
def pytest_configure(config: pytest.Config) -> None:
    """Read the settings, bind this process's Worker, and when the options or ini keys show
    an eval run, register the xdist hooks and start the controller."""
    settings = read_settings(config)
    config.stash[SETTINGS] = settings
    try:
        config.stash[PRICES] = load_prices(config.rootpath)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    warn_split_path_options(config)
    worker = config.stash[WORKER] = Worker(config, settings)  # no I/O until an item runs
    if is_xdist_worker(config):
        worker.engine.notify = WorkerLines(config, worker.name, settings.progress_s).event
    else:
        worker.engine.notify = lambda kind, model, facts: _progress_event(
            config, kind, model, facts
        )
    if is_xdist_worker(config) or not uses_llmeval(config):
        return
    check_report_paths(config, settings)  # before any model work: a usage error
    if config.pluginmanager.has_plugin("xdist"):
        hooks = XdistHooks(pin_gpus=settings.pin_gpus, models=settings.model_names)
        config.stash[XDIST_HOOKS] = hooks
        config.pluginmanager.register(hooks, XDIST_NAME)
    activate_controller(config)


def _progress_event(config: pytest.Config, kind: str, model: str, facts: dict[str, Any]) -> None:
    # The controller may start after configure (a Task collected, the fixture used).
    controller = config.stash.get(CONTROLLER, None)
    if controller is not None:
        controller.progress_event(kind, model, facts)


def activate_controller(config: pytest.Config) -> Controller | None:
    """The session's controller, started (and registered) on first call; None on a worker."""
    if is_xdist_worker(config):
        return None
    if CONTROLLER not in config.stash:
        controller = Controller(
            config,
            config.stash[SETTINGS],
            config.stash[PRICES],
            config.stash.get(XDIST_HOOKS, None),
        )
        config.stash[CONTROLLER] = controller
        config.pluginmanager.register(controller, CONTROLLER_NAME)
    return config.stash[CONTROLLER]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister what pytest_configure and activation registered."""
    for name in (CONTROLLER_NAME, XDIST_NAME):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin, name)


# ---- collection -------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> list[pytest.Item] | None:
    """A module-level Task becomes its items (one per selected row and model), in the first
    module that holds it (a Task imported into another module is not collected again)."""
    if not isinstance(obj, Task):
        return None
    config = collector.config
    activate_controller(config)
    claims = config.stash.setdefault(TASK_CLAIMS, TaskClaims())
    # An xdist worker follows the controller's Hub decision; a lone process decides once.
    hub = getattr(config, "workerinput", {}).get(HUB_DECISION)
    return claimed_items(
        collector, obj, claims, config.stash[SETTINGS], lambda task: _scorer(config, task), hub
    )


def _scorer(config: pytest.Config, task: Task) -> ScoreFn:
    if callable(task.scorer):
        return task.scorer
    found: ScoreFn | None = config.hook.pytest_llmeval_make_scorer(
        config=config, task=task, name=task.scorer
    )
    if found is None:
        raise TaskError(
            f"unknown scorer {task.scorer!r}; built in: {', '.join(sorted(BUILTIN_SCORERS))} "
            "(or pass a function, or provide it with a pytest_llmeval_make_scorer hook)"
        )
    return found


@pytest.hookimpl(trylast=True)
def pytest_llmeval_make_scorer(config: pytest.Config, task: Task, name: str) -> ScoreFn | None:
    """The built-in scorers by name (a conftest's implementation runs first)."""
    return BUILTIN_SCORERS.get(name)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: decide once whether the Hub is reachable, for every worker.

    Otherwise each worker asks on its own and a flaky network makes them load different
    sources. Probed only in sessions that show an eval run at configure time (a plain suite
    run with -n must not touch the network); the controller still compares the rows the
    workers report (`Controller.add_task`).
    """
    config: pytest.Config = node.config
    if uses_llmeval(config):
        node.workerinput[HUB_DECISION] = data.hub_reachable()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: Sequence[str]) -> None:
    """xdist controller: a worker collected eval items, so this is an eval run."""
    config: pytest.Config = node.config
    if CONTROLLER not in config.stash and any(is_eval_item(nodeid) for nodeid in ids):
        controller = activate_controller(config)
        if controller is not None:  # registered too late for this call: tell it directly
            controller.count_collection(ids)


def pytest_report_from_serializable(config: pytest.Config, data: dict[str, Any]) -> None:
    """xdist controller: a worker's report carries records, so this session uses llmeval
    (e.g. only through the fixture); start the controller before the report is logged."""
    if data.get(PAYLOAD_ATTRIBUTE) is not None:
        activate_controller(config)


# ---- running items ------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_llmeval_make_backend(config: pytest.Config, spec: ModelSpec) -> Backend:
    """The built-in registry (a conftest's implementation runs first)."""
    settings = config.stash[SETTINGS]
    return create_backend(spec, {"device": settings.device, "dtype": settings.dtype})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, TestReport, TestReport]:
    """Attach an item's records to its teardown report (so each crosses xdist once), HTML
    extras to its result row, and one-line messages to misses and known errors."""
    report = yield
    if call.when == "call":
        item.stash[CALL_OUTCOME] = report.outcome  # for generations made in teardown too
    if isinstance(item, EvalItem) and item.record is not None:
        if call.when == "teardown":
            payload = {
                "records": [to_json(item.record)],
                "task": task_info_to_json(item.task_info),
            }
            setattr(report, PAYLOAD_ATTRIBUTE, payload)
        elif item.config.getoption("htmlpath", None) and (call.when == "call" or not report.passed):
            extras = [*getattr(report, "extras", []), *item_extras(item.record)]
            setattr(report, "extras", extras)  # noqa: B010 - pytest-html's report attribute
    elif isinstance(item, EvalItem | TaskProblemItem) and call.when == "teardown":
        # No records (a problem item, or an item skipped because its model does not fit its
        # GPU), but the controller must learn of the task: to fail (or excuse) its gates and to
        # write the report saying why nothing ran.
        payload = {"records": [], "task": task_info_to_json(item.task_info)}
        setattr(report, PAYLOAD_ATTRIBUTE, payload)
    elif CLIENT_CALLS in item.stash:
        _client_payload(item, call.when, report)
    if call.excinfo is not None and isinstance(call.excinfo.value, ItemMiss | ItemError):
        # A known error in setup is its one-line message; a traceback would only be noise.
        # (Misses in the call phase are already one line: EvalItem.repr_failure.)
        report.longrepr = str(call.excinfo.value)
    return report


def _client_payload(item: pytest.Item, when: str, report: TestReport) -> None:
    """A hand-written test's generations become records with the test's outcome."""
    if when == "teardown":
        outcome = item.stash.get(CALL_OUTCOME, "error")
        made, task = client_records(item, outcome, worker_of(item.config).name)
        if made:
            payload = {"records": [to_json(r) for r in made], "task": task_info_to_json(task)}
            setattr(report, PAYLOAD_ATTRIBUTE, payload)


@pytest.hookimpl(trylast=True)  # after reordering plugins (-p randomly): models stay contiguous
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Model sweeps: eval items model by model, so one model is resident at a time."""
    model_major(items)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Model sweeps: unload each model no later item of this process needs (run/sweep.py)."""
    worker = item.config.stash.get(WORKER, None)
    if worker is not None and isinstance(item, EvalItem):
        release_unneeded(worker, item)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Remember the running test: `llmeval_backend` generations belong to it."""
    item.config.stash[RUNNING] = item


@pytest.fixture(scope="session")
def llmeval_backend(request: pytest.FixtureRequest) -> BackendClient:
    """The first `--model` for hand-written tests: `llmeval_backend.generate(prompt) -> text`.

    The model is loaded once per process and shared with the task items; each generation is
    cached, and reported like an item of the test that was running, with its outcome (see
    `BackendClient`). Session-scoped, so wider-scoped fixtures can use it.
    """
    config = request.config
    activate_controller(config)
    return BackendClient(
        worker_of(config),
        config.stash[SETTINGS].models[0],
        lambda: config.stash.get(RUNNING, None),
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """After the run loop: the controller checks and reports the gates."""
    # Here and not on the controller object: pluggy fixes a hook's implementations when the
    # hook is called, and an xdist controller may start its Controller inside the loop.
    result = yield
    controller = session.config.stash.get(CONTROLLER, None)
    if controller is not None:
        controller.record_not_run()
        controller.log_gates(session)
    return result


# ---- session end --------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Release models; hand this process's model loads to the controller."""
    config = session.config
    worker = config.stash.get(WORKER, None)
    if worker is None:
        return
    engine = worker.engine
    used = bool(engine.backends or engine.failed)
    loads = engine.load_records()
    info = WorkerInfo(cuda_visible_devices=os.environ.get(GPU_VARIABLE), pid=os.getpid())
    worker.close()
    if not used:
        return
    if is_xdist_worker(config):
        config.workeroutput["llmeval_loads"] = [asdict(load) for load in loads]  # type: ignore[attr-defined]
        config.workeroutput["llmeval_worker"] = asdict(info)  # type: ignore[attr-defined]
    elif CONTROLLER in config.stash:
        config.stash[CONTROLLER].add_loads(loads, worker.name, info)


@pytest.hookimpl(trylast=True)
def pytest_llmeval_generate_report(
    config: pytest.Config, facts: RunFacts, exitstatus: int
) -> RunReport:
    """The built-in report (a conftest's implementation runs first)."""
    return build_report(facts, exitstatus, config.rootpath)
