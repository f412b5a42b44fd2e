"""Run metadata: versions without imports, git commit, machine facts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pytest_llmeval.report import runinfo


def test_git_commit_inside_and_outside_a_repo(tmp_path: Path) -> None:
    assert runinfo.git_commit(tmp_path) is None
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a.txt").write_text("one")
    subprocess.run(["git", "add", "a.txt"], cwd=tmp_path, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
        cwd=tmp_path,
        check=True,
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert runinfo.git_commit(tmp_path) == runinfo.GitInfo(commit=head, dirty=False)
    (tmp_path / "a.txt").write_text("two")
    assert runinfo.git_commit(tmp_path) == runinfo.GitInfo(commit=head, dirty=True)


def test_versions_and_machine() -> None:
    versions = runinfo.versions()
    assert versions["plugin"] == "0.1.0" and versions["pytest"] and versions["python"]
    facts = runinfo.machine()
    assert facts.cpu_count and facts.cpu
    assert facts.memory_gb and facts.memory_gb > 1 and facts.python_version.count(".") == 2
    gpus = facts.gpus
    # Either NVML saw GPUs (names listed) or it says why there are none.
    assert (gpus.count > 0 and len(gpus.names) == gpus.count) or (gpus.count == 0 and gpus.reason)
