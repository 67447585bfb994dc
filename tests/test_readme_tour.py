"""The README's tour shows what `make demo` prints today: the table is rerun and compared."""

import re
from pathlib import Path

import pytest

from tests.printed import printouts_differ, run_attnflow

README = Path(__file__).resolve().parents[1] / "README.md"
DEMO = ["explain", "The keys to the cabinet are on the table.", "--method", "raw", "--method", "rollout",
        "--method", "flow"]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_tour_table_is_what_make_demo_prints():
    block = re.search(r"<!-- tour-explain: the output of `make demo` -->\n```\n(.*?)```", README.read_text(), re.S)
    assert block, "the README lost its tour block"
    shown = run_attnflow(DEMO, columns=120)
    difference = printouts_differ(shown, block.group(1))
    assert difference is None, f"rerun `attnflow explain` (make demo) and paste its table into README.md: {difference}"
