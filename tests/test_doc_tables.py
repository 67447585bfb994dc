"""Every marked table of results in README.md and docs/*.md matches the committed results file it was made from.

The tables are made by ``scripts/doc_tables.py`` (``make reproduce`` reruns the experiments, then it);
this test fails when a table was edited by hand, or a results file changed, without the other.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_script():
    spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "scripts" / "doc_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["doc_tables"] = module
    spec.loader.exec_module(module)
    return module


doc_tables = _load_script()


def test_every_marked_table_matches_its_results_file() -> None:
    problems = doc_tables.check()
    assert not problems, "\n".join(problems) + "\nrun: python scripts/doc_tables.py (or make reproduce)"


def test_every_table_the_script_knows_is_in_the_docs_and_every_results_file_exists() -> None:
    used = set()
    for path in doc_tables.documents():
        used |= {name for name, _, _ in doc_tables.marked_tables(path.read_text(encoding="utf-8"))}
    assert used == set(doc_tables.TABLES), set(doc_tables.TABLES) ^ used
    for source in doc_tables.SOURCES.values():
        assert (ROOT / source).is_file(), source


def test_a_changed_number_in_a_results_file_is_caught(tmp_path) -> None:
    """The check can fail: change one committed number and the table that shows it no longer matches."""
    for relative in ["README.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    for source in doc_tables.SOURCES.values():
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, tmp_path / source)
    assert doc_tables.check(tmp_path) == []
    path = tmp_path / doc_tables.SOURCES["digits-faithfulness"]
    results = json.loads(path.read_text())
    results["summary"]["flow"]["deletion_auc"][0] += 0.01
    path.write_text(json.dumps(results))
    problems = doc_tables.check(tmp_path)
    assert problems and all("digits-faithfulness" in line for line in problems), problems
    # and rewriting the docs from the results makes them agree again
    for doc in doc_tables.documents(tmp_path):
        doc.write_text(doc_tables.update(doc.read_text(), tmp_path))
    assert doc_tables.check(tmp_path) == []


def test_a_table_edited_by_hand_is_caught(tmp_path) -> None:
    text = "intro\n\n<!-- table: digits-faithfulness -->\n" + doc_tables.render("digits-faithfulness") + "\n\nend\n"
    assert doc_tables.update(text) == text
    edited = re.sub(r"\d\.\d{3}", "9.999", text, count=1)  # one number of the table, whatever the results hold
    assert edited != text and doc_tables.update(edited) == text


def test_unknown_table_names_are_reported(tmp_path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- table: no-such-table -->\n| a |\n")
    problems = doc_tables.check(tmp_path)
    assert len(problems) == 1 and "no-such-table" in problems[0]


@pytest.mark.parametrize("name", sorted(doc_tables.TABLES))
def test_each_table_renders_as_a_markdown_table(name) -> None:
    lines = doc_tables.render(name).split("\n")
    assert len(lines) >= 3 and all(line.startswith("|") and line.endswith("|") for line in lines)
    assert set(lines[1]) <= set("|-: ")


def test_sva_tables_show_no_gradient_taken_at_the_word_embedding() -> None:
    """A results file made before the gradient yardsticks moved to the first layer's input has no
    ``options.yardsticks``: its gradient column is float32 round-off and no table shows it."""
    old = {"n_layers": 1, "methods": ["rollout"], "ground_truths": ["blankout", "gradient"], "options": {},
           "correlation": {"blankout": {"rollout": [[0.5, 0.1]]}, "gradient": {"rollout": [[0.6, 0.2]]}},
           "paper": {"correlation": {"blankout": {"rollout": 0.71}, "gradient": {"rollout": 0.54}}}}
    table = doc_tables.readme_sva(old)
    assert "0.50 ± 0.10" in table and "0.60" not in table and "input gradients" not in table
    new = dict(old, ground_truths=["blankout", "gradient", "saliency"],
               options={"yardsticks": {"gradient_defined": False}},
               correlation={**old["correlation"], "gradient": {"rollout": [[None, None]]},
                            "saliency": {"rollout": [[0.7, 0.1]]}})
    gradients = doc_tables.sva_gradients(new)
    assert "| rollout | 0.54 | undefined | 0.70 ± 0.10 |" in gradients
