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


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_the_tour_answer_of_smollm2_is_what_the_command_prints(smollm2_path):
    """The README's real-LM entry, rerun on this run's conversion of SmolLM2 ($ATTNFLOW_CACHE, set by conftest)."""
    import os
    import shlex
    import subprocess
    import sys

    from attnflow.smollm2 import CACHE_ENV
    from tests.printed import cli_env

    block = re.search(r"<!-- tour-smollm2: (.*?) -->\n```\n(.*?)```", README.read_text(), re.S)
    assert block, "the README lost its SmolLM2 tour block"
    extra = {name: os.environ[name] for name in (CACHE_ENV, "PYTHONPATH") if name in os.environ}  # this attnflow
    run = subprocess.run([sys.executable, "-m", "attnflow", *shlex.split(block.group(1))], capture_output=True,
                         text=True, env=cli_env(100, **extra), timeout=600)
    assert run.returncode == 0, run.stderr
    assert "converting" not in run.stderr  # the run's one conversion was made by the fixture
    shown = "\n".join(line.rstrip() for line in run.stdout.splitlines()).strip()
    difference = printouts_differ(shown, block.group(2))
    assert difference is None, f"rerun `attnflow {block.group(1)}` (100 columns) and paste it in: {difference}"
