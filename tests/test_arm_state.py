"""Arm state (an alias's setup / teardown / patch / lock keys): parsed with clear errors,
applied around each batch of that arm only, under a lock another process cannot take, part
of the arm's cache key and of the report."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import assert_valid_run, run_evals
from pytest_llmeval.declare.models import ArmState, UnknownModel, load_user_aliases

# A server stand-in: `state.json` holds the installed patch; `patched` answers right only
# while a patch is installed, and logs every call with the state it saw.
STATEFUL_MODULE = textwrap.dedent(
    """
    import json
    from pathlib import Path

    STATE = Path("state.json")
    EVENTS = Path("events.jsonl")

    def _log(**event):
        with EVENTS.open("a") as handle:
            handle.write(json.dumps(event) + "\\n")

    def install(arm):
        STATE.write_text(arm.payload.decode())
        _log(event="setup", arm=arm.name, sha=arm.patch_sha256)

    def remove(arm):
        STATE.unlink()
        _log(event="teardown", arm=arm.name)

    def broken(arm):
        raise ConnectionError("server said no")

    def patched(messages, settings):
        left, op, right = messages[-1]["content"].split("q: ")[1].split()[:3]
        on = STATE.exists()
        _log(event="generate", installed=on)
        return f"#### {int(left) + int(right)}" if on else "#### 0"
    """
)

ALIAS = textwrap.dedent(
    """
    [tool.llmeval.models.patched]
    backend = "callable"
    model = "stateful:patched"
    setup = "stateful:install"
    teardown = "stateful:remove"
    patch = "patch.json"
    """
)


@pytest.fixture
def armproject(evalproject: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LLMEVAL_ARM_LOCK_DIR", str(tmp_path / "locks"))
    evalproject.makepyfile(stateful=STATEFUL_MODULE)
    evalproject.makefile(".toml", pyproject=ALIAS)
    (evalproject.path / "patch.json").write_text('{"hooks": [{"module": "m", "scale": 0}]}')
    return evalproject


def events(project: pytest.Pytester) -> list[dict[str, object]]:
    path = project.path / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [json.loads(line) for line in lines]


def test_state_applied_around_each_batch_keyed_and_reported(armproject: pytest.Pytester) -> None:
    result = run_evals(armproject, "--model", "patched", "--llmeval-batch-size", "4")
    assert result.ret == 0, result.stdout.str()
    log = events(armproject)
    # 10 items in batches of 4: three setup/teardown pairs, every generation inside one.
    kinds = [e["event"] for e in log]
    assert kinds == ["setup", *["generate"] * 4, "teardown"] * 2 + [
        "setup", "generate", "generate", "teardown",
    ]  # fmt: skip
    assert all(e["installed"] for e in log if e["event"] == "generate")
    sha = hashlib.sha256((armproject.path / "patch.json").read_bytes()).hexdigest()
    assert {e["sha"] for e in log if e["event"] == "setup"} == {sha}
    assert not (armproject.path / "state.json").exists()

    report = assert_valid_run(armproject.path / "out")
    [comparison] = report["comparisons"]
    assert comparison["candidate"] == "patched" and comparison["n"] == 10
    [load] = [m for m in report["model_loads"] if m["model"] == "patched"]
    assert load["arm_state"]["patch_sha256"] == sha
    assert load["arm_state"]["setup"] == "stateful:install"
    assert load["arm_state"]["applied_batches"] == 3
    [plain] = [m for m in report["model_loads"] if m["model"] != "patched"]
    assert plain["arm_state"] is None
    # The arm's provenance: its patch's hash, and an identity that differs from the plain arm's.
    arms = report["tasks"]["mini"]["arms"]
    assert arms["patched"]["patch_sha256"] == sha
    assert (arms["patched"]["model"], arms["patched"]["backend"]) == ("patched", "callable")
    assert arms["patched"]["identity_sha256"] == load["identity_sha256"]
    assert arms["callable:answers:reply"]["patch_sha256"] is None
    assert arms["callable:answers:reply"]["identity_sha256"] == plain["identity_sha256"]
    assert plain["identity_sha256"] != load["identity_sha256"]

    # A warm rerun touches no state; an edited payload is a cache miss for that arm only.
    assert run_evals(armproject, "--model", "patched").ret == 0
    assert events(armproject) == []
    (armproject.path / "patch.json").write_text('{"hooks": [{"module": "m", "scale": 1}]}')
    assert run_evals(armproject, "--model", "patched").ret == 0
    assert sum(e["event"] == "generate" for e in events(armproject)) == 10
    edited = assert_valid_run(armproject.path / "out")["tasks"]["mini"]["arms"]["patched"]
    new_sha = hashlib.sha256((armproject.path / "patch.json").read_bytes()).hexdigest()
    assert edited["patch_sha256"] == new_sha != sha
    assert edited["identity_sha256"] != arms["patched"]["identity_sha256"]


def test_a_failing_setup_errors_the_arms_items_naming_it(armproject: pytest.Pytester) -> None:
    toml = ALIAS.replace("stateful:install", "stateful:broken")
    armproject.makefile(".toml", pyproject=toml)
    result = run_evals(armproject, "--model", "patched")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*arm patched: setup stateful:broken failed: ConnectionError: server said no*"]
    )
    assert [e["event"] for e in events(armproject)] == []  # no generation without its state
    outcomes = result.parseoutcomes()
    assert outcomes["errors"] == 10  # the patched arm's items; the baseline's pass


def test_the_lock_is_held_from_setup_to_teardown(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pytest_llmeval.declare.models import ModelSpec
    from pytest_llmeval.run.arm_state import ArmSetup

    monkeypatch.setenv("LLMEVAL_ARM_LOCK_DIR", str(tmp_path))
    spec = ModelSpec("p", "callable", "json:dumps", arm_state=ArmState(setup="builtins:id"))
    state = ArmSetup(spec, "main")
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )

    def other_process_can_lock() -> bool:
        code = subprocess.run([sys.executable, "-c", probe, str(state.lock_path)]).returncode
        assert code in (0, 3)
        return code == 0

    with state.applied():
        assert not other_process_can_lock()
        with state.applied():  # re-entered inside its own generation: no second lock
            pass
        assert not other_process_can_lock()
    assert other_process_can_lock()
    assert state.applied_batches == 1


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ('setup = "nocolon"', "setup = \"package.module:function\", got 'nocolon'"),
        ('setup = "m:f"\npatch = "missing.json"', "patch: no such file"),
        ('patch = "p.json"', "has patch but no setup or teardown"),
        ('setup = "m:f"\nlock = "a/b"', "lock names a lock file"),
        ("teardown = 3", "teardown must be a non-empty string, got 3"),
    ],
)
def test_bad_arm_keys_are_one_line_errors(tmp_path: Path, keys: str, message: str) -> None:
    (tmp_path / "p.json").write_text("{}")
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.llmeval.models.x]\nbackend = "callable"\nmodel = "m:f"\n{keys}\n'
    )
    with pytest.raises(UnknownModel, match=message.replace("(", r"\(")) as info:
        load_user_aliases(tmp_path)
    assert "[tool.llmeval.models.x]" in str(info.value) and "\n" not in str(info.value)


def test_arm_keys_leave_the_backend_options_and_resolve_the_patch(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("{}")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.llmeval.models.x]\nbackend = "callable"\nmodel = "m:f"\nversion = "2"\n'
        'setup = "m:on"\nteardown = "m:off"\npatch = "p.json"\nlock = "gpu1"\n'
    )
    spec = load_user_aliases(tmp_path)["x"]
    assert spec.options == {"version": "2"}
    assert spec.arm_state == ArmState("m:on", "m:off", str(tmp_path / "p.json"), "gpu1")
