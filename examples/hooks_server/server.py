"""A model patched at inference time behind an HTTP API (workflow 4's server, small).

Wraps a transformers causal LM on the CPU (or a GPU) with FastAPI and serves, on 127.0.0.1
only:

- `POST /api/generate`: `{"prompt": "..."}` (sent as is) or `{"messages": [...]}` (rendered
  with the model's chat template), `max_new_tokens` (1-512), `stop` (strings the text is cut
  at), `use_hooks` (bool). Greedy decoding. Answers `{"text", "tokens_in", "tokens_out",
  "hooks_applied"}`: the hooks that actually ran in this generation's forward passes.
- `POST /api/hooks`: `{"hooks": [{"module": "model.layers.10.mlp", "scale": 0.0}]}` installs
  one real torch forward hook per entry, scaling that module's output, in place of any
  installed before (so a retried setup never stacks hooks). An unknown module is a 422.
- `DELETE /api/hooks`: removes every hook. `GET /api/hooks`: lists the installed hooks.
- `GET /api/requests`: the log of generations (sequence number, `use_hooks`, hooks
  installed, hooks applied, SHA-256 of the prompt), the last 10,000.

Hooks run only in a generation that asks for them (`use_hooks: true`); one generation runs at a
time, and installing or removing hooks waits for it, so a generation never sees the hooks
change halfway. Run it::

    python -m examples.hooks_server.server --model DIR_OR_HUB_ID --port 8765

Stop it with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import threading
from collections import deque
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from transformers import AutoModelForCausalLM, AutoTokenizer

HOST = "127.0.0.1"  # loopback only: the API changes the served model for everyone
MAX_NEW_TOKENS = 512
MAX_PROMPT_TOKENS = 4096
MAX_HOOKS = 64
LOG_SIZE = 10_000


class Message(BaseModel):
    """One chat message."""

    role: str
    content: str


class GenerateRequest(BaseModel):
    """The body of `POST /api/generate`: a prompt or messages, and the decoding limits."""

    prompt: str | None = None
    messages: list[Message] | None = None
    max_new_tokens: int = Field(default=128, ge=1, le=MAX_NEW_TOKENS)
    stop: list[str] = Field(default_factory=list)
    use_hooks: bool = False


class HookSpec(BaseModel):
    """One forward hook: the named module's output multiplied by `scale`."""

    module: str
    scale: float


class HooksRequest(BaseModel):
    """The body of `POST /api/hooks` (the patch payload)."""

    hooks: list[HookSpec] = Field(max_length=MAX_HOOKS)


class HookedModel:
    """The model, its installed hooks and the generation log, behind one lock."""

    def __init__(self, model: str, device: str = "cpu") -> None:
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model)
        loader: Any = AutoModelForCausalLM.from_pretrained  # Any: its stub rejects a path
        self.model: Any = loader(model, dtype=torch.float32)
        self.model.to(device).eval()
        self.device = device
        self.lock = threading.Lock()
        self.installed: list[tuple[HookSpec, Any]] = []  # (spec, torch handle)
        self.enabled = False  # hooks scale outputs only inside a use_hooks generation
        self.fired: set[str] = set()
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.generations = 0

    def install(self, hooks: list[HookSpec]) -> list[dict[str, Any]]:
        """Replace the installed hooks with `hooks`; raises KeyError for an unknown module."""
        modules = dict(self.model.named_modules())
        unknown = [hook.module for hook in hooks if hook.module not in modules]
        if unknown:
            raise KeyError(f"no module named {unknown[0]!r} (e.g. model.layers.10.mlp)")
        with self.lock:
            self._remove()
            for hook in hooks:
                handle = modules[hook.module].register_forward_hook(self._hook(hook))
                self.installed.append((hook, handle))
            return self.listed()

    def _hook(self, spec: HookSpec) -> Any:
        def scale(module: Any, inputs: Any, output: Any) -> Any:
            if not self.enabled:
                return None  # installed, not asked for: the output stays as it is
            self.fired.add(spec.module)
            if isinstance(output, tuple):
                return (output[0] * spec.scale, *output[1:])
            return output * spec.scale

        return scale

    def remove(self) -> None:
        """Remove every installed hook."""
        with self.lock:
            self._remove()

    def _remove(self) -> None:
        for _, handle in self.installed:
            handle.remove()
        self.installed = []

    def listed(self) -> list[dict[str, Any]]:
        """The installed hooks as JSON."""
        return [hook.model_dump() for hook, _ in self.installed]

    def generate(self, request: GenerateRequest) -> dict[str, Any]:
        """One greedy generation, hooked when `request.use_hooks`."""
        if (request.prompt is None) == (request.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        if request.messages is not None:
            messages = [m.model_dump() for m in request.messages]
            text = str(
                self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            )
        else:
            text = request.prompt or ""
        encoded = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        tokens_in = int(encoded["input_ids"].shape[1])
        if tokens_in > MAX_PROMPT_TOKENS:
            raise ValueError(f"prompt has {tokens_in} tokens; at most {MAX_PROMPT_TOKENS}")
        with self.lock:
            self.enabled, self.fired = request.use_hooks, set()
            try:
                with torch.inference_mode():
                    output = self.model.generate(
                        **encoded.to(self.device),
                        max_new_tokens=request.max_new_tokens,
                        do_sample=False,
                        temperature=None,
                        top_p=None,
                        top_k=None,
                        pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    )
            finally:
                self.enabled = False
            applied = sorted(self.fired)
            self.generations += 1
            self.log.append(
                {
                    "seq": self.generations,
                    "use_hooks": request.use_hooks,
                    "hooks_installed": len(self.installed),
                    "hooks_applied": applied,
                    "prompt_sha256": hashlib.sha256(text.encode()).hexdigest(),
                }
            )
        new = output[0, tokens_in:].tolist()
        if new and new[-1] == self.tokenizer.eos_token_id:
            new = new[:-1]  # the end-of-sequence token is not text
        answer = self.tokenizer.decode(new, skip_special_tokens=True)
        for stop in request.stop:
            if stop and stop in answer:
                answer = answer[: answer.index(stop)]
        return {
            "text": answer,
            "tokens_in": tokens_in,
            "tokens_out": len(new),
            "hooks_applied": applied,
        }


def create_app(hooked: HookedModel) -> FastAPI:
    """The HTTP API around `hooked`."""
    app = FastAPI(title="hooked model")

    @app.post("/api/generate")
    def generate(request: GenerateRequest) -> dict[str, Any]:
        try:
            return hooked.generate(request)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/api/hooks")
    def install(request: HooksRequest) -> dict[str, Any]:
        try:
            return {"hooks": hooked.install(request.hooks)}
        except KeyError as exc:
            raise HTTPException(422, exc.args[0]) from None

    @app.delete("/api/hooks")
    def remove() -> dict[str, Any]:
        hooked.remove()
        return {"hooks": []}

    @app.get("/api/hooks")
    def listed() -> dict[str, Any]:
        return {"hooks": hooked.listed()}

    @app.get("/api/requests")
    def requests_log() -> dict[str, Any]:
        return {"requests": list(hooked.log)}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve a model on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Local model directory or Hub id")
    parser.add_argument("--port", type=int, default=8765, help="Port on 127.0.0.1")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    app = create_app(HookedModel(args.model, args.device))
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
