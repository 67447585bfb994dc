"""The README's tour shows what `make demo` prints today: the table is rerun and compared."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
DEMO = ["explain", "The keys to the cabinet are on the table.", "--method", "raw", "--method", "rollout",
        "--method", "flow"]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_tour_table_is_what_make_demo_prints():
    block = re.search(r"<!-- tour-explain: the output of `make demo` -->\n```\n(.*?)```", README.read_text(), re.S)
    assert block, "the README lost its tour block"
    env = {"COLUMNS": "120", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "attnflow", *DEMO], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    shown = "\n".join(line.rstrip() for line in run.stdout.splitlines()).strip()
    assert shown == block.group(1).strip(), "rerun `attnflow explain` (make demo) and paste its table into README.md"
