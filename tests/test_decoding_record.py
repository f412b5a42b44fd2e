"""The record's `decoding` (a backend's settings dict) crosses xdist as plain JSON."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import item_record
from pytest_llmeval.analyze.plain import RecordValueError, plain_record


def test_a_records_decoding_settings_cross_as_plain_json() -> None:
    decoding = {"temperature": np.float64(0.7), "stop_strings": ("\n", np.str_("Q:")), "seed": 3}
    plain = plain_record(item_record(decoding=decoding)).decoding
    assert plain == {"temperature": 0.7, "stop_strings": ["\n", "Q:"], "seed": 3}
    assert type(plain["temperature"]) is float and type(plain["stop_strings"][1]) is str
    with pytest.raises(RecordValueError, match=r"'decoding.sampler' holds a builtins.object"):
        plain_record(item_record(decoding={"sampler": object()}))
