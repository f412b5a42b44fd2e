"""A minimal item for driving the `Engine` directly: one user message (its node id), default
generation settings, and one batch key, so every item of a test may share a batch."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from pytest_llmeval.backends import GenerationRequest
from pytest_llmeval.declare.models import ModelSpec
from pytest_llmeval.declare.task import Generation


@dataclass
class Item:
    nodeid: str
    model_spec: ModelSpec

    def batch_key(self) -> Hashable:
        return "same"

    def request(self) -> GenerationRequest:
        return GenerationRequest([{"role": "user", "content": self.nodeid}], Generation())
