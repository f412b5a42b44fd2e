"""Harness vs raw engine on a GPU: vLLM items/s and transformers tokens/s (issue 12, target 3).

A random-weights model shaped like Qwen2.5-1.5B-Instruct (its config written out by hand:
hidden 1536, 28 layers, 12 heads, 2 KV heads, intermediate 8960, vocab 151936, tied
embeddings, bfloat16) is built once into `--model-dir`, with a local tokenizer: the embedded
SmolLM2 tokenizer (ChatML template, like Qwen's) when it is on this machine, else a byte-level
one with the ChatML template, its vocabulary padded to the model's 151936 ids so that every id
the random model draws decodes. Random weights rarely draw the end token, so every item
generates its full `--max-new-tokens`: the work is the same in every run.

Both sides get the same GSM8K test rows with the shipped prompt (`evals/test_gsm8k.py`), greedy,
`--max-new-tokens` (256), and each runs in its own process (one engine per process, as users
run it), alternating A B A B for `--rounds` rounds; load time is excluded on both sides:

- vLLM: raw `LLM.generate` on all prompts in one call (token ids, one `SamplingParams`) vs
  `pytest <task> --model vllm:<dir>` (cache off): items/s; target harness/raw >= 0.9;
- transformers: raw batched `model.generate` (left padding, dataset order, `--batch-size`) vs
  `pytest <task> --model transformers:<dir> --llmeval-batch-size <same>`: tokens/s.

    python benchmarks/bench_vllm.py                       # everything, 1319 items, 2 rounds
    python benchmarks/bench_vllm.py --items 200 --rounds 1 --skip transformers

Prints one line per run and a JSON summary (machine, versions, GPU name, every figure) that
`--out FILE` also writes. Needs a CUDA GPU and vLLM (`pip install vllm`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, _shipped_prompt, gsm8k_rows, write_gsm8k_task

QWEN25_1_5B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 1536,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "intermediate_size": 8960,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "max_window_layers": 21,
    "initializer_range": 0.02,
}
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DEFAULT_DIR = Path(tempfile.gettempdir()) / "llmeval-bench" / "qwen2.5-1.5b-shaped-random"


# --- the model -------------------------------------------------------------------------------


def _source_tokenizer() -> Any:
    """The embedded SmolLM2 tokenizer when present here, else a byte-level ChatML one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        from pytest_llmeval.backends.weights import locate_weights
        from pytest_llmeval.declare.models import resolve_model

        path = locate_weights(resolve_model("smollm2-135m").model_id, None).path
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # no embedded model on this machine (no network either)
        print(f"embedded tokenizer unavailable ({exc}); using a byte-level one", file=sys.stderr)
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=CHATML,
    )  # fmt: skip


def padded_tokenizer(vocab_size: int) -> Any:
    """The source tokenizer with unreachable filler tokens up to `vocab_size` ids (no merge
    produces them, so prompts tokenize as before; every id the model draws decodes)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    source = _source_tokenizer()
    data = json.loads(source.backend_tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    taken = max([*vocab.values(), *(t["id"] for t in data.get("added_tokens", []))])
    for new_id in range(taken + 1, vocab_size):
        vocab[f"<|filler_{new_id}|>"] = new_id
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)),
        bos_token=source.bos_token,
        eos_token=source.eos_token,
        pad_token=source.pad_token or source.eos_token,
        chat_template=source.chat_template or CHATML,
    )


def build_model(directory: Path) -> Path:
    """Write the random-weights Qwen2.5-1.5B-shaped model and its tokenizer (once)."""
    if (directory / "config.json").exists():
        return directory
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = padded_tokenizer(QWEN25_1_5B["vocab_size"])  # type: ignore[arg-type]
    config = Qwen2Config(
        **{k: v for k, v in QWEN25_1_5B.items() if k != "architectures"},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config.architectures = QWEN25_1_5B["architectures"]
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --- one measured run per process ------------------------------------------------------------


def _prompts(directory: Path, n: int) -> tuple[Any, list[list[int]]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, padding_side="left")
    prompt = _shipped_prompt()
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.format(**row)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for row in gsm8k_rows(n)
    ]
    ids = [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    return tokenizer, ids


def raw_vllm(directory: Path, n: int, max_new_tokens: int) -> dict[str, Any]:
    """All prompts in one `LLM.generate` call (as lm-eval's vLLM backend does)."""
    import vllm

    _, ids = _prompts(directory, n)
    started = time.perf_counter()
    llm = vllm.LLM(model=str(directory), dtype="auto")
    load = time.perf_counter() - started
    params = vllm.SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_new_tokens)
    started = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
    wall = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"items": len(outputs), "tokens": tokens, "wall_s": wall, "load_s": load}


def raw_transformers(directory: Path, n: int, max_new_tokens: int, batch: int) -> dict[str, Any]:
    """Batched `model.generate` in dataset order, left padding, greedy."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer, ids = _prompts(directory, n)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16).to("cuda")
    model.eval()
    load = time.perf_counter() - started
    tokens = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, batch):
            encoded = tokenizer.pad({"input_ids": ids[start : start + batch]}, return_tensors="pt")
            output = model.generate(
                **encoded.to("cuda"),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            for row in output[:, encoded["input_ids"].shape[1] :].tolist():
                ends = [i for i, t in enumerate(row) if t == tokenizer.eos_token_id]
                tokens += ends[0] if ends else len(row)  # the end token not counted
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    return {"items": n, "tokens": tokens, "wall_s": wall, "load_s": load}


def harness(model: str, n: int, max_new_tokens: int, batch: int | None) -> dict[str, Any]:
    """`pytest` on the GSM8K task with `--model <model>`, cache off, in its own process."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        write_gsm8k_task(directory, n, max_new_tokens)
        report = directory / "out" / "report.json"
        command = [
            sys.executable, "-m", "pytest", str(directory), "-q", "-p", "no:cacheprovider",
            "--model", model, "--llmeval-cache", "off", "--llmeval-report", str(report),
            "--rootdir", str(directory),
        ]  # fmt: skip
        if batch is not None:
            command += ["--llmeval-batch-size", str(batch)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
        started = time.perf_counter()
        done = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if not report.exists():
            raise SystemExit(f"harness run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        envelope = json.loads(report.read_text())
    load = sum(float(entry.get("load_time_s") or 0) for entry in envelope["model_loads"])
    [entry] = envelope["tasks"]["bench"]["models"].values()
    metrics = entry["metrics"]
    return {
        "items": metrics["generated"],
        "tokens": metrics["tokens_out"],
        "wall_s": wall - load,  # end to end (start-up, collection, reports) minus the load
        "load_s": load,
        "generation_s": metrics["generation_s"],
        "batches": metrics["batches"],
    }


# --- driver ----------------------------------------------------------------------------------


def _phase(args: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its figures."""
    command = [sys.executable, __file__, "--phase", args.phase_name, "--model-dir",
               str(args.model_dir), "--items", str(args.items), "--max-new-tokens",
               str(args.max_new_tokens), "--batch-size", str(args.batch_size)]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": ver("transformers"),
        "vllm": ver("vllm"),
        "date": time.strftime("%Y-%m-%d"),
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1319)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="transformers batch size")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--skip", action="append", default=[], choices=["vllm", "transformers"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n, new, batch = args.items, args.max_new_tokens, args.batch_size
    if args.phase is not None:  # a child process: one measurement, JSON on the last line
        phases = {
            "raw-vllm": lambda: raw_vllm(args.model_dir, n, new),
            "harness-vllm": lambda: harness(f"vllm:{args.model_dir}", n, new, None),
            "raw-transformers": lambda: raw_transformers(args.model_dir, n, new, batch),
            "harness-transformers": lambda: harness(
                f"transformers:{args.model_dir}", n, new, batch
            ),
        }
        print(json.dumps(phases[args.phase]()))
        return
    build_model(args.model_dir)
    engines = [e for e in ("vllm", "transformers") if e not in args.skip]
    pairs = [(e, f"raw-{e}", f"harness-{e}") for e in engines]
    runs: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        for engine, raw_name, harness_name in pairs:
            figures = {}
            for name in (raw_name, harness_name):  # A B per round: A B A B over the rounds
                args.phase_name = name
                figures[name] = _phase(args)
                print(f"round {round_index + 1} {name}: {json.dumps(figures[name])}", flush=True)
            raw, ours = figures[raw_name], figures[harness_name]
            if engine == "vllm":
                ratio = (ours["items"] / ours["wall_s"]) / (raw["items"] / raw["wall_s"])
                unit = "items/s"
            else:
                ratio = (ours["tokens"] / ours["wall_s"]) / (raw["tokens"] / raw["wall_s"])
                unit = "tokens/s"
            runs.append({"round": round_index + 1, "engine": engine, "unit": unit,
                         "raw": raw, "harness": ours, "ratio": round(ratio, 3)})  # fmt: skip
            print(f"round {round_index + 1} {engine}: harness/raw {unit} = {ratio:.3f}")
    summary = {"machine": machine(), "items": n, "max_new_tokens": new, "runs": runs}
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
