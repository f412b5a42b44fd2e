"""Arm state on a shared server: an arm's `setup` and `teardown` around each of its batches,
under a machine-wide lock, so the state holds while, and only while, that arm generates.

Workflow 4 patches a served model at inference time: the patched arm needs `POST /api/hooks`
with a patch payload before its requests and `DELETE /api/hooks` after, and the baseline arm
must never see the patch. An alias says so with three keys (`declare.models.ArmState`)::

    [tool.llmeval.models.patched]
    backend = "callable"
    model = "examples.hooks_server.client:patched"
    setup = "examples.hooks_server.client:install"      # setup(arm): install arm.payload
    teardown = "examples.hooks_server.client:remove"    # teardown(arm): remove it
    patch = "examples/hooks_server/patch.json"          # bytes to setup, sha256 to key and report

The engine enters `ArmSetup.applied()` around every generation of that model in this process
(a batch, a whole streamed share, an item generated alone), never around cache reads:

1. take the lock file `<tmp>/pytest-llmeval-<lock>.lock` (`fcntl.flock`, exclusive,
   blocking; the OS releases it when a process dies), then
2. `setup(arm)`, generate, `teardown(arm)` (also after a failed generation), then release.

Under xdist every worker of the machine takes the same lock, so two arms that share one
server's state never interleave: a worker waits at most for another worker's one batch (the
only wait between workers). Items read from the cache never touch the server, so they need no
state. An arm without state (a baseline whose requests ask for no hooks) takes no lock; a
baseline on a server whose state affects every request gets a `setup` that clears it, and so
joins the lock. Arms on separate servers may name separate locks (`lock = "gpu1"`).

The patch file's SHA-256 and the source identity of `setup` and `teardown` are part of the
arm's cache key (an edited payload is a cache miss); the report's `model_loads[].arm_state`
names them with how many batches were applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmeval.backends import BackendError, one_line
from pytest_llmeval.backends.fingerprint import import_target, source_identity
from pytest_llmeval.declare.models import ModelSpec

try:
    import fcntl
except ImportError:  # Windows: no flock; arms that share a server must run with -n 0 there
    fcntl = None  # type: ignore[assignment]

LOCK_DIR_ENV = "LLMEVAL_ARM_LOCK_DIR"


class ArmStateError(BackendError):
    """An arm's setup or teardown failed (the message names the arm, the step and why)."""


@dataclass(frozen=True)
class Arm:
    """What `setup(arm)` and `teardown(arm)` receive."""

    name: str
    """The model's name as given with `--model` (the alias)."""
    model_id: str
    """The alias's `model` (for a callable arm its `module:function`)."""
    patch: Path | None
    """The patch payload file, None without one."""
    payload: bytes | None
    """The file's bytes as read once when the arm was created: exactly what was hashed."""
    patch_sha256: str | None
    """SHA-256 of `payload` (hex), None without a patch."""
    worker: str
    """`gw0`... under xdist, `main` otherwise."""


class ArmSetup:
    """One arm's setup and teardown in this process, applied around its generations."""

    def __init__(self, spec: ModelSpec, worker: str) -> None:
        state = spec.arm_state
        if state is None:
            raise ValueError(f"model {spec.name} has no arm state")
        self.state = state
        self.setup = None if state.setup is None else _import(spec.name, "setup", state.setup)
        self.teardown = (
            None if state.teardown is None else _import(spec.name, "teardown", state.teardown)
        )
        payload = None if state.patch is None else Path(state.patch).read_bytes()
        self.arm = Arm(
            name=spec.name,
            model_id=spec.model_id,
            patch=None if state.patch is None else Path(state.patch),
            payload=payload,
            patch_sha256=None if payload is None else hashlib.sha256(payload).hexdigest(),
            worker=worker,
        )
        folder = Path(os.environ.get(LOCK_DIR_ENV) or tempfile.gettempdir())
        self.lock_path = folder / f"pytest-llmeval-{state.lock}.lock"
        self.applied_batches = 0
        self._active = False

    def identity(self) -> dict[str, Any]:
        """The part of the arm's cache key that stands for its state: the payload's hash and
        the source identity of setup and teardown (never the file's path: a moved checkout
        still hits)."""
        sources = {}
        for key, function in (("setup", self.setup), ("teardown", self.teardown)):
            target = getattr(self.state, key)
            if target is not None:
                sources[key] = {"target": target, "source": source_identity(target, function)}
        return {"patch_sha256": self.arm.patch_sha256, **sources}

    def info(self) -> dict[str, Any]:
        """Provenance for the report: targets, patch file and hash, lock, batches applied."""
        return {
            "setup": self.state.setup,
            "teardown": self.state.teardown,
            "patch": self.state.patch,
            "patch_sha256": self.arm.patch_sha256,
            "patch_bytes": None if self.arm.payload is None else len(self.arm.payload),
            "lock": str(self.lock_path),
            "applied_batches": self.applied_batches,
        }

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Hold the lock, run setup, yield for the generation, run teardown, release.

        Re-entered inside an applied generation (a stream retrying a request alone) it only
        yields: the state is in place and the lock is this process's. A failing setup or
        teardown raises `ArmStateError` naming the arm (its batch's items become errors); when
        the generation failed, teardown still runs and its own error is a note on that one."""
        if self._active:
            yield
            return
        with _exclusive(self.lock_path):
            self._active = True
            self.applied_batches += 1
            try:
                self._call("setup", self.setup)
                yield
            except BaseException as exc:
                try:
                    self._call("teardown", self.teardown)
                except ArmStateError as failed:
                    exc.add_note(str(failed))
                raise
            else:
                self._call("teardown", self.teardown)
            finally:
                self._active = False

    def _call(self, step: str, function: Callable[[Arm], Any] | None) -> None:
        if function is None:
            return
        try:
            function(self.arm)
        except Exception as exc:
            target = getattr(self.state, step)
            raise ArmStateError(
                f"arm {self.arm.name}: {step} {target} failed: {type(exc).__name__}: "
                f"{one_line(exc)}"
            ) from exc


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold `path` locked exclusively (blocking) across processes; not re-entrant."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Read-only is enough for flock, and lets another user's run share a lock file in /tmp.
    handle = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _import(arm: str, key: str, target: str) -> Callable[[Arm], Any]:
    found: Callable[[Arm], Any] = import_target(target, f"arm {arm}: {key}")
    return found
