"""Local tokenizers that render and tokenize prompts like three real chat models (no Hub here).

Each carries its model's real chat template (copied verbatim from the public
tokenizer_config.json: Meta-Llama-3-8B-Instruct, gemma-2-9b-it, Mistral-7B-Instruct-v0.1), its
real special tokens, and a post-processor that prepends BOS to every encoding the way the real
tokenizers do (`tokenizer(text)` adds BOS unless `add_special_tokens=False`). The vocabulary is
byte-level with no merges: token ids differ from the real ones, BOS handling does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class ChatModel:
    """A model family's template and special tokens."""

    name: str
    template: str
    bos: str
    eos: str
    specials: tuple[str, ...] = ()


CHAT_MODELS = (
    ChatModel(
        "llama-3-instruct",
        LLAMA3_TEMPLATE,
        "<|begin_of_text|>",
        "<|eot_id|>",
        ("<|start_header_id|>", "<|end_header_id|>"),
    ),
    ChatModel(
        "gemma-2-it", GEMMA2_TEMPLATE, "<bos>", "<eos>", ("<start_of_turn>", "<end_of_turn>")
    ),
    ChatModel("mistral-instruct", MISTRAL_TEMPLATE, "<s>", "</s>"),
)


def save_tokenizer(model: ChatModel, directory: Path) -> Path:
    """Write `model`'s tokenizer (tokenizer.json, config, chat template) into `directory`."""
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([model.bos, model.eos, *model.specials])
    bos_id = tokenizer.token_to_id(model.bos)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{model.bos} $A",
        pair=f"{model.bos} $A {model.bos} $B",
        special_tokens=[(model.bos, bos_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=model.bos,
        eos_token=model.eos,
        chat_template=model.template,
    )
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(directory)
    return directory
