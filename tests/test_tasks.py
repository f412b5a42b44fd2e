"""Unit tests for pytest_llmeval.declare.task."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmeval.declare.task import ChatPrompt, DataSource, Generation, Task, TaskError
from pytest_llmeval.score.scorers import Score, exact


def _score(response: str, target: str, row: Any) -> Score:
    return Score(1.0, response, "exact")


def _kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "name": "demo",
        "data": DataSource(files="demo.jsonl"),
        "prompt": ChatPrompt(user="{question}"),
        "target": "answer",
        "scorer": _score,
    }
    kwargs.update(overrides)
    return kwargs


def _problem(**kwargs: Any) -> str:
    """The declaration problem: raised as TaskError, or kept on the task as `problem`."""
    try:
        task = Task(**kwargs)
    except TaskError as exc:
        return str(exc)
    problem = getattr(task, "problem", None)
    assert problem, f"Task({kwargs}) was accepted without a problem"
    return str(problem)


# --- Task declaration ---------------------------------------------------------------


def test_valid_task() -> None:
    task = Task(**_kwargs(gates=["accuracy >= 0.5"]))
    assert getattr(task, "problem", None) is None
    assert task.name == "demo"
    assert task.gates == ("accuracy >= 0.5",)  # list becomes a tuple
    assert task.generation == Generation()
    assert task.pass_threshold == 1.0
    assert task.label_field is None


def test_unknown_field_names_it_with_hint() -> None:
    message = _problem(**_kwargs(scorrer=_score))
    assert "'scorrer'" in message
    assert "did you mean 'scorer'?" in message
    assert "known fields" in message


def test_unknown_field_without_close_match() -> None:
    message = _problem(**_kwargs(zzzqqq=1))
    assert "'zzzqqq'" in message
    assert "did you mean" not in message


@pytest.mark.parametrize("field", ["name", "data", "prompt", "target", "scorer"])
def test_missing_required_field(field: str) -> None:
    kwargs = _kwargs()
    del kwargs[field]
    message = _problem(**kwargs)
    assert "missing required field" in message
    assert field in message


@pytest.mark.parametrize("name", ["", "a/b", "a b", "a::b"])
def test_bad_name(name: str) -> None:
    message = _problem(**_kwargs(name=name))
    assert "Task name" in message
    assert repr(name) in message


def test_data_must_be_a_data_source() -> None:
    assert "DataSource" in _problem(**_kwargs(data="demo.jsonl"))


def test_generation_must_be_a_generation() -> None:
    assert "Generation" in _problem(**_kwargs(generation={"max_new_tokens": 8}))


def test_data_source_needs_a_source() -> None:
    # Kept, not raised: raising at import would stop the whole session (issue 11, point 7).
    problem = DataSource().problem
    assert problem is not None and "hub=, files= or generate=" in problem
    assert "hub=, files= or generate=" in _problem(**_kwargs(data=DataSource()))


# --- ChatPrompt ----------------------------------------------------------------------


def test_chat_prompt_system_few_shot_and_user() -> None:
    prompt = ChatPrompt(
        user="Q: {question}",
        system="Answer briefly.",
        few_shot=[{"question": "1+1", "answer": "2"}, {"question": "2+3", "answer": "5"}],
    )
    assert prompt({"question": "4+4"}) == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Q: 1+1"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "Q: 2+3"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "Q: 4+4"},
    ]


def test_chat_prompt_user_only_and_custom_answer_template() -> None:
    prompt = ChatPrompt(user="{text}", few_shot=[{"text": "hi", "label": "ok"}], answer="L={label}")
    assert prompt({"text": "yo"}) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "L=ok"},
        {"role": "user", "content": "yo"},
    ]


def test_task_messages_uses_prompt() -> None:
    task = Task(**_kwargs())
    assert task.messages({"question": "why?"}) == [{"role": "user", "content": "why?"}]


def test_task_messages_with_callable_prompt() -> None:
    task = Task(**_kwargs(prompt=lambda row: [{"role": "user", "content": row["q"].upper()}]))
    assert task.messages({"q": "hey"}) == [{"role": "user", "content": "HEY"}]


def test_missing_template_field_names_it() -> None:
    prompt = ChatPrompt(user="{question} {context}")
    with pytest.raises(TaskError) as excinfo:
        prompt({"question": "q"})
    message = str(excinfo.value)
    assert "'context'" in message
    assert "'question'" in message  # lists the fields the row does have


def test_missing_field_in_few_shot_answer_names_it() -> None:
    prompt = ChatPrompt(user="{q}", few_shot=[{"q": "x"}])
    with pytest.raises(TaskError, match="'answer'"):
        prompt({"q": "y"})


def test_chat_prompt_fields() -> None:
    assert ChatPrompt(user="{question} and {context!r:>5} {{literal}}").fields() == {
        "question",
        "context",
    }


def test_chat_prompt_fields_with_index_and_attribute() -> None:
    prompt = ChatPrompt(user="{question}\nA) {choices[0]}\nB) {choices[1]}")
    assert prompt.fields() == {"question", "choices"}
    rendered = prompt({"question": "q", "choices": ["x", "y"]})
    assert rendered[-1]["content"] == "q\nA) x\nB) y"


# --- target --------------------------------------------------------------------------


def test_target_as_field_name() -> None:
    task = Task(**_kwargs(target="answer"))
    assert task.target_for({"answer": 42}) == "42"


def test_target_as_callable() -> None:
    task = Task(**_kwargs(target=lambda row: row["answer"].split("####")[-1].strip()))
    assert task.target_for({"answer": "work\n#### 18"}) == "18"


def test_missing_target_field_raises() -> None:
    task = Task(**_kwargs(target="label"))
    with pytest.raises(TaskError) as excinfo:
        task.target_for({"text": "t"})
    message = str(excinfo.value)
    assert "'label'" in message
    assert "demo" in message
    assert "'text'" in message


# --- Generation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "Generation.n must be an integer >= 1"),
        ({"n": 2.5, "temperature": 0.7}, "Generation.n must be an integer"),
        ({"n": 5}, "needs sampling: set temperature > 0"),
    ],
)
def test_generation_validation(kwargs: dict[str, Any], fragment: str) -> None:
    problem = Generation(**kwargs).problem
    assert problem is not None and fragment in problem
    assert fragment in _problem(**_kwargs(generation=Generation(**kwargs)))


def test_generation_defaults_greedy() -> None:
    generation = Generation()
    assert generation.greedy is True
    assert Generation(temperature=0.7).greedy is False
    assert generation.as_dict() == {
        "max_new_tokens": 256,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": (),
        "seed": 0,
        "top_k": 0,
        "repetition_penalty": 1.0,
        "n": 1,
    }
    # One draw's settings (the cache key's, a callable's): n is how many draws, not how.
    drawn = Generation(n=5, temperature=0.7).draw_dict()
    assert drawn == Generation(n=1, temperature=0.7).draw_dict() and "n" not in drawn


def test_generation_stop_list_becomes_tuple_and_is_hashable() -> None:
    generation = Generation(stop=["\n\n", "###"])  # type: ignore[arg-type]
    assert generation.stop == ("\n\n", "###")
    assert hash(generation) == hash(Generation(stop=("\n\n", "###")))
    assert generation == Generation(stop=("\n\n", "###"))
    cache = {generation: "batch"}
    assert cache[Generation(stop=["\n\n", "###"])] == "batch"  # type: ignore[arg-type]
    assert Generation(max_new_tokens=8) != Generation(max_new_tokens=9)


def test_generation_single_string_stop() -> None:
    try:
        generation = Generation(stop="###")  # type: ignore[arg-type]
    except TaskError:
        return
    assert generation.stop == ("###",)


# --- required_fields -----------------------------------------------------------------


def test_required_fields() -> None:
    task = Task(
        **_kwargs(prompt=ChatPrompt(user="{text} / {lang}"), target="label", label_field="group")
    )
    assert task.required_fields() == {"text", "lang", "label", "group"}


def test_required_fields_with_callable_target_and_prompt() -> None:
    task = Task(
        **_kwargs(
            prompt=lambda row: [{"role": "user", "content": row["x"]}],
            target=lambda row: row["y"],
            scorer=exact,
        )
    )
    assert task.required_fields() == set()
