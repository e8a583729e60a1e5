"""``python -m perf.<tool> --help`` of every perf tool: a whole description, every flag listed."""

from __future__ import annotations

import importlib
import re

import pytest

TOOLS = [
    "dnmf_scaling",
    "fused_pass_ab",
    "nmf_speed",
    "rank_selection_planted",
    "rank_selection_speed",
    "solver_validation",
    "subnormals",
    "time_to_target",
]


@pytest.mark.parametrize("tool", TOOLS)
def test_help_describes_the_tool_in_whole_sentences(tool, capsys):
    module = importlib.import_module(f"perf.{tool}")
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m perf.{tool} ")
    # the description: the paragraph between the usage lines and the options
    paragraphs = text.split("\n\n")
    description = " ".join(paragraphs[1].split())
    assert description.endswith((".", "?")), description  # not cut mid-sentence
    assert "``" not in description, description
    assert re.search(r"^options:", text, re.MULTILINE)
