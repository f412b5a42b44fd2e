"""Embedded arithmetic suite: 40 one-step word problems generated from a seed (no download)."""

from arithmetic_problems import problems

from pytest_llmeval import ChatPrompt, DataSource, Generation, Task, scoring

arithmetic = Task(
    name="arithmetic",
    description="One-step arithmetic word problems (+, -, x, /) with exact integer answers",
    data=DataSource(generate=problems, split="seed1234"),
    prompt=ChatPrompt(
        user="{question}\n"
        "Think briefly, then give the final answer on its own line as '#### <number>'."
    ),
    target="answer",
    scorer=scoring.numeric,
    generation=Generation(max_new_tokens=96),
    label_field="operation",
    gates=["accuracy >= 0.05"],
)
