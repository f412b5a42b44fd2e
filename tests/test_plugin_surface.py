"""The plugin's surface: registered only where used, extension hooks, xdist boundaries."""

from __future__ import annotations

import json
import os
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import assert_valid_run, mini_rows, run_evals
from pytest_llmeval.plugin import CONTROLLER_NAME, XDIST_NAME
from pytest_llmeval.run.xdist_queue import XdistQueueUnavailable, queued_indices

# A conftest that records, on the controller, which llmeval plugin objects exist at session
# end and which scheduler xdist used.
WITNESS = textwrap.dedent(
    """
    import json, pytest

    SEEN = {}

    @pytest.hookimpl(wrapper=True, optionalhook=True)
    def pytest_xdist_make_scheduler(config, log):
        scheduler = yield
        SEEN["scheduler"] = type(scheduler).__name__
        return scheduler

    def pytest_sessionfinish(session):
        config = session.config
        if hasattr(config, "workerinput"):
            return
        names = ("llmeval-controller", "llmeval-xdist")
        SEEN["registered"] = [n for n in names if config.pluginmanager.get_plugin(n)]
        with open("witness.json", "w") as handle:
            json.dump(SEEN, handle)
    """
)


def witness(pytester: pytest.Pytester) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads((pytester.path / "witness.json").read_text())
    return seen


PLAIN_TESTS = """
def test_one():
    assert True

def test_two():
    assert True
"""


def test_a_plain_session_registers_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WITNESS)
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning").assert_outcomes(passed=2)
    assert witness(pytester)["registered"] == []


def test_a_plain_suite_under_xdist_keeps_xdist_scheduling(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WITNESS)
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=2)
    assert witness(pytester) == {"scheduler": "LoadScheduling", "registered": []}


def test_an_eval_run_under_xdist_schedules_up_front_unless_dist_is_explicit(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    evalproject.makeconftest(WITNESS)
    monkeypatch.setenv(
        "PYTHONPATH", str(evalproject.path), prepend=os.pathsep
    )  # workers import answers.py
    args = ["--model", "callable:answers:reply", "--llmeval-data-dir=data", "-n", "2"]
    evalproject.runpytest_subprocess(*args).assert_outcomes(passed=11)
    assert witness(evalproject) == {
        "scheduler": "EvalScheduling",
        "registered": [CONTROLLER_NAME, XDIST_NAME],
    }
    result = evalproject.runpytest_subprocess(*args, "--dist", "load")
    result.assert_outcomes(passed=11)  # same results, xdist's own scheduling
    assert witness(evalproject)["scheduler"] == "LoadScheduling"


def test_the_plugin_objects_leave_at_unconfigure(evalproject: pytest.Pytester) -> None:
    config = evalproject.parseconfigure("--model", "callable:answers:reply")
    assert config.pluginmanager.get_plugin(CONTROLLER_NAME) is not None
    config.hook.pytest_unconfigure(config=config)
    assert config.pluginmanager.get_plugin(CONTROLLER_NAME) is None


# ---- extension hooks -------------------------------------------------------------------

ECHO_CONFTEST = textwrap.dedent(
    """
    from pytest_llmeval.backends import GenerationResult

    class Echo:
        default_batch_size = 4

        def __init__(self, spec):
            self.spec = spec

        def identity(self):
            return {"backend": "conftest-echo", "model": self.spec.model_id}

        def render(self, messages):
            return messages[-1]["content"]

        def info(self):
            return {**self.identity(), "model_loads": 0, "load_time_s": 0.0}

        def generate(self, requests, batch_id):
            return [
                GenerationResult(
                    text="#### 7", prompt=self.render(r.messages), tokens_in=1, tokens_out=1,
                    latency_s=0.0, finish_reason="stop", batch_id=batch_id,
                    batch_size=len(requests), batch_wall_s=0.0, latency_method="echo",
                )
                for r in requests
            ]

        def close(self):
            pass

    def pytest_llmeval_make_backend(config, spec):
        if spec.model_id == "answers:reply":
            return Echo(spec)

    def pytest_llmeval_update_report(config, report):
        report.metadata["patch"] = "hooked-v2"
        report.metadata["items_seen"] = report.totals.items
    """
)


def test_a_conftest_backend_wins_and_a_conftest_edits_the_report(
    evalproject: pytest.Pytester,
) -> None:
    evalproject.makeconftest(ECHO_CONFTEST)
    # The echo answers 7 everywhere: right only for row 3 (3 + 4); the built-in callable
    # backend would have answered every row right.
    result = run_evals(evalproject, "--llmeval-cache", "off")
    result.assert_outcomes(passed=1, failed=10)  # row 3; 9 misses + the accuracy gate
    report = assert_valid_run(evalproject.path / "out")
    assert report["metadata"] == {"patch": "hooked-v2", "items_seen": 10}
    assert report["model_loads"][0]["backend_info"]["backend"] == "conftest-echo"


def test_a_conftest_builds_the_report(evalproject: pytest.Pytester) -> None:
    evalproject.makeconftest(
        """
        from pytest_llmeval.report.envelope import build_report

        def pytest_addoption(parser):
            parser.addoption("--token", help="an API token for this suite")

        def pytest_llmeval_generate_report(config, facts, exitstatus):
            report = build_report(facts, exitstatus, config.rootpath)
            report.run_id = "ci-1234"
            report.argv = [arg for arg in report.argv if not arg.startswith("--token")]
            report.metadata["records_seen"] = len(facts.records)
            return report
        """
    )
    run_evals(evalproject, "--token=s3cret").assert_outcomes(passed=11)
    report = assert_valid_run(evalproject.path / "out")
    assert report["run_id"] == "ci-1234" and report["metadata"] == {"records_seen": 10}
    assert "s3cret" not in json.dumps(report)


def test_a_task_alone_makes_an_eval_run(pytester: pytest.Pytester) -> None:
    # No llmeval option and no ini key: collecting a Task is what starts the controller
    # (the conftest's echo backend stands in for the default model).
    pytester.makeconftest(
        ECHO_CONFTEST.replace('if spec.model_id == "answers:reply":', "if True:") + WITNESS
    )
    pytester.makepyfile(
        test_sevens="""
        from pytest_llmeval import ChatPrompt, DataSource, Task, scoring

        sevens = Task(
            name="sevens",
            data=DataSource(generate=lambda: [{"q": "3 + 4", "a": "7"}, {"q": "2 + 2", "a": "4"}]),
            prompt=ChatPrompt(user="{q}"),
            target="a",
            scorer=scoring.numeric,
            gates=["accuracy >= 0.5"],
        )
        """
    )
    result = pytester.runpytest("-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=2, failed=1)  # 3 + 4 right, the gate holds; 2 + 2 missed
    assert result.ret == 0
    assert witness(pytester)["registered"] == [CONTROLLER_NAME]
    (report,) = (pytester.path / "reports").glob("*/report.json")
    assert assert_valid_run(report.parent)["metadata"]["patch"] == "hooked-v2"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_a_session_using_only_the_fixture_gets_its_report(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    # No option, no ini key, no Task: under xdist the controller learns of the plugin from
    # the first worker report that carries records.
    pytester.makeconftest(ECHO_CONFTEST.replace('if spec.model_id == "answers:reply":', "if True:"))
    pytester.makepyfile(
        test_by_hand="""
        import pytest

        @pytest.mark.parametrize("question", ["3 + 4", "5 + 2", "1 + 1", "9 - 2"])
        def test_sevens(llmeval_backend, question):
            assert llmeval_backend.generate(question).endswith("7")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=4)
    (report,) = (pytester.path / "reports").glob("*/report.json")
    data = assert_valid_run(report.parent)
    assert data["totals"]["items"] == 4 and data["gates"] == []
    assert data["metadata"]["patch"] == "hooked-v2"
    assert len(data["model_loads"]) >= 1 and data["workers"]


def test_a_task_names_a_scorer_a_conftest_provides(evalproject: pytest.Pytester) -> None:
    evalproject.makeconftest(
        """
        from pytest_llmeval import Score

        def pytest_llmeval_make_scorer(config, task, name):
            if name == "ends_with_target":
                def score(response, target, row):
                    right = response.rstrip().endswith(target)
                    return Score(float(right), target if right else None, "suffix")
                return score
        """
    )
    source = (evalproject.path / "test_mini.py").read_text()
    named = source.replace("scorer=scoring.numeric", 'scorer="ends_with_target"')
    (evalproject.path / "test_mini.py").write_text(named)
    run_evals(evalproject).assert_outcomes(passed=11)
    methods = {json.loads(x)["method"] for x in (evalproject.path / "out" / "items.jsonl").open()}
    assert methods == {"suffix"}
    (evalproject.path / "test_mini.py").write_text(named.replace("ends_with", "ends_wiht"))
    result = run_evals(evalproject)
    result.assert_outcomes(errors=1, failed=1)  # the broken task, and its gate (no data)
    result.stdout.fnmatch_lines(["*unknown scorer 'ends_wiht_target'; built in: exact, numeric*"])


# ---- xdist boundaries --------------------------------------------------------------------

RECORD_COUNTER = textwrap.dedent(
    """
    import json, pytest

    CARRIED = []

    def pytest_runtest_logreport(report):
        if getattr(report, "llmeval", None) is not None:
            CARRIED.append([report.nodeid, report.when, len(report.llmeval["records"])])

    def pytest_sessionfinish(session):
        if not hasattr(session.config, "workerinput"):
            with open("carried.json", "w") as handle:
                json.dump(CARRIED, handle)
    """
)


def test_each_record_crosses_the_xdist_channel_once(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    evalproject.makeconftest(RECORD_COUNTER)
    monkeypatch.setenv("PYTHONPATH", str(evalproject.path), prepend=os.pathsep)
    result = evalproject.runpytest_subprocess(
        "--model", "callable:answers:reply", "--llmeval-data-dir=data", "-n", "2"
    )
    result.assert_outcomes(passed=11)
    carried = json.loads((evalproject.path / "carried.json").read_text())
    assert sorted(nodeid.split("::")[-1] for nodeid, _, _ in carried) == [
        f"mini/test/{i:04d}" for i in range(10)
    ]
    assert {(when, count) for _, when, count in carried} == {("teardown", 1)}


def test_the_xdist_queue_is_readable_in_a_real_worker(
    pytester: pytest.Pytester,
) -> None:
    # Fails loudly when a pytest-xdist release moves the worker queue this plugin reads.
    pytester.makepyfile(
        """
        import json
        from pytest_llmeval.run.xdist_queue import queued_indices

        def test_first(request):
            with open("queue.json", "w") as handle:
                json.dump(queued_indices(request.config), handle)

        def test_second():
            pass

        def test_third():
            pass
        """
    )
    pytester.runpytest_subprocess("-n", "1").assert_outcomes(passed=3)
    queue = json.loads((pytester.path / "queue.json").read_text())
    # xdist decides how many it sends at first; whatever it sent, the next one is test 1.
    assert queue[:1] == [1] and queue == sorted(set(queue)) and set(queue) <= {1, 2}


def test_an_unreadable_xdist_queue_is_a_clear_error() -> None:
    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugins=lambda: [object()]))
    with pytest.raises(XdistQueueUnavailable, match=r"pytest-xdist \d+\.\d+.*WorkerInteractor"):
        queued_indices(config)  # type: ignore[arg-type]


def test_without_the_queue_a_worker_warns_and_still_gets_every_item_right(
    evalproject: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    evalproject.makeconftest(
        """
        from pytest_llmeval.run import worker
        from pytest_llmeval.run.xdist_queue import XdistQueueUnavailable

        def broken(config):
            raise XdistQueueUnavailable("cannot read the xdist worker queue (simulated)")

        worker.queued_indices = broken
        """
    )
    monkeypatch.setenv("PYTHONPATH", str(evalproject.path), prepend=os.pathsep)
    (evalproject.path / "data" / "mini.jsonl").write_text(mini_rows(wrong=2))
    result = evalproject.runpytest_subprocess(
        "--model", "callable:answers:reply", "--llmeval-data-dir=data", "-n", "1",
        "--llmeval-report", "out/report.json",
    )  # fmt: skip
    result.assert_outcomes(passed=9, failed=2)
    result.stdout.fnmatch_lines(["*simulated*items are generated one at a time*"])
    records = [json.loads(x) for x in (evalproject.path / "out" / "items.jsonl").open()]
    assert {r["batch_size"] for r in records} == {1}


# ---- item positions come from the final selection ----------------------------------------


def test_last_failed_with_a_file_argument_reruns_only_the_misses(
    evalproject: pytest.Pytester,
) -> None:
    # Misses late in the file: positions recorded before --lf deselected pointed past the
    # end of the shorter list (IndexError in every rerun item).
    rows = [json.loads(x) for x in mini_rows(n=12).splitlines()]
    for row in rows[9:]:
        row["question"] += " WRONG"
    data = "".join(json.dumps(r) + "\n" for r in rows)
    (evalproject.path / "data" / "mini.jsonl").write_text(data)
    run_evals(evalproject, "test_mini.py").assert_outcomes(passed=10, failed=3)
    again = run_evals(evalproject, "test_mini.py", "--lf")
    again.assert_outcomes(failed=4)  # the 3 misses again, and the gate (0 of 3 right)
    again.stdout.no_fnmatch_line("*IndexError*")
    # --ff runs the misses first, then the rest: every item right or missed as before.
    run_evals(evalproject, "test_mini.py", "--ff").assert_outcomes(passed=10, failed=3)
