"""What the terminal and the pages show (issue 28, item 6): readable small scores, image bars over patches,
the predicted class, an encoder-decoder page's own layers and residual, one line per fact."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from attnflow.cli import main
from attnflow.report.terminal import ROUND_OFF, column_largest, score_text
from tests.report.test_stacking import merged, read_tables
from tests.tolerances import rounded_bound


def _run(capsys, *args) -> str:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def _page_data(path) -> dict:
    block = re.search(r'<script type="application/json" id="[^"]*">(.*?)</script>', path.read_text(), re.S)
    assert block, "no data block in the page"
    return json.loads(block.group(1))


def test_small_scores_keep_two_significant_digits():
    for value in (2.345e-05, 4.9e-4, -3e-6, 1e-20):
        shown = score_text(value)
        assert shown != "0.000" and float(shown) == pytest.approx(value, rel=0.05)  # 2 digits: within 5 %
    assert score_text(0.0) == "0.000" and score_text(5e-4) == "0.001" and score_text(0.123456) == "0.123"


@pytest.mark.e2e
def test_a_generated_target_prints_its_small_gradient_scores_and_says_greedy_once(capsys, tmp_path):
    """The bundled reverse model: grad-rollout's source scores are 1e-5 to 1e-3; none may print as 0.000."""
    path, page = tmp_path / "s.json", tmp_path / "s.html"
    out = _run(capsys, "explain", "7 2 9 4", "--model", "reverse", "--generate", "4", "--method", "rollout",
               "--method", "grad-rollout", "--json", path, "--html", page)
    assert out.count("greedy") == 1, out
    data = json.loads(path.read_text())
    shown = merged(read_tables(out), ("#", "token", "part"))["grad-rollout"]
    values = np.asarray(data["scores"]["grad-rollout"][-1], dtype=float)
    assert shown == [score_text(v, column_largest(values)) for v in values]
    floor = ROUND_OFF * column_largest(values)  # below it: float64 round-off (the <pad> row's 4.6e-20), 0.000
    small = [(cell, v) for cell, v in zip(shown, values, strict=True) if floor <= abs(v) < 5e-4]
    assert len(small) >= 4 and all(cell != "0.000" for cell, _ in small)
    assert all(cell == "0.000" for cell, v in zip(shown, values, strict=True) if 0 < abs(v) < floor)
    header = _page_data(page)
    assert header["run_residual"] == 0.5 and header["residual"] == 0.0  # as run; the graph holds it in its edges
    names = header["layer_names"]
    assert sum(name.startswith("enc ") for name in names) == 2 and sum(name.endswith(" cross") for name in names) == 2
    script = page.read_text()
    assert "D.run_residual" in script and '" encoder + "' in script  # the header shows these, not the graph's


@pytest.mark.e2e
def test_image_bars_compare_patches_and_the_prediction_is_printed(capsys, tmp_path):
    from attnflow.tasks.digits import digits_test_set, save_digit_png

    images, labels = digits_test_set(1)
    image = save_digit_png(images[0], tmp_path / "digit.png")
    out = _run(capsys, "explain", "--image", image, "--method", "rollout", "--method", "grad-rollout",
               "--json", tmp_path / "i.json")
    rows = [line for line in out.splitlines() if line.startswith("│")]
    cls_row = next(row for row in rows if "[CLS]" in row)
    assert "█" not in cls_row and "1.00" in cls_row  # scored, no bar
    patch_rows = [row for row in rows if "patch" in row]
    grad_bars = [row.split("│")[-2].strip() for row in patch_rows]
    assert sum(bool(bar) for bar in grad_bars) >= len(patch_rows) // 2  # grad-rollout's patches are visible
    assert "██████████" in "".join(grad_bars)  # the largest patch fills its bar
    target = json.loads((tmp_path / "i.json").read_text())["target"]
    assert f"predicted class {target['class']} (probability {target['value']:.3f})" in out
    assert int(labels[0]) == target["class"]


def test_the_png_has_one_colour_bar_per_map_with_its_range(tmp_path):
    from attnflow.image_maps import _range, overlay_figure

    picture = np.zeros((16, 16, 3), np.uint8)
    flat = np.array([[0.050, 0.064], [0.055, 0.060]])
    steep = np.array([[0.0, 1.0], [0.2, 0.5]])
    assert _range(flat) == (0.050, 0.064) and _range(np.ones((2, 2))) == (1.0, 2.0)
    from PIL import Image

    (tmp_path / "f.png").write_bytes(overlay_figure(picture, {"flow": flat, "rollout": steep}, min_side=64))
    pixels = np.asarray(Image.open(tmp_path / "f.png").convert("RGB")).astype(int)
    # below the panels: rows where a long run of pixels steps through the colour map (the bars)
    lower = pixels[int(pixels.shape[0] * 0.6):]
    varied = [row for row in lower if len({tuple(p) for p in row}) > 60]
    assert varied, "no colour bar under the maps"


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from tests.tiny_models import save_tiny_model

    return save_tiny_model("gpt2", tmp_path_factory.mktemp("gpt2") / "tiny-gpt2")


@pytest.mark.parametrize("answer", ["span", "each"])
def test_the_generation_report_opens_on_what_the_terminal_printed(capsys, tmp_path, tiny_gpt2, answer):
    page, path = tmp_path / "g.html", tmp_path / "g.json"
    out = _run(capsys, "explain", "Hello world, this is", "--model", tiny_gpt2, "--generate", "3", "--answer", answer,
               "--method", "rollout", "--method", "grad-rollout", "--json", path, "--html", page)
    data = _page_data(page)
    explanation = json.loads(path.read_text())
    assert "answer" in data["outputs"]  # the span is in the page either way
    column = data["outputs"].index("answer")
    for method in ("rollout", "grad-rollout"):
        span = np.asarray(explanation["scores"][method], dtype=float)
        shown = np.array([[np.nan if v is None else v for v in layer[column]] for layer in data["scores"][method]])
        np.testing.assert_allclose(shown, span, rtol=0, atol=rounded_bound(6))  # the page rounds to 6 decimals
    if answer == "span":
        assert data["output"] == "answer" and "(mean over its 3 tokens)" in out
        table = merged(read_tables(out), ("#", "token", "part"))
        rollout = np.asarray(explanation["scores"]["rollout"][-1])
        assert table["rollout"] == [score_text(v, column_largest(rollout)) for v in rollout]
    else:
        assert data["output"] == explanation["generation"]["prompt_length"] - 1  # the first answer token's table
    assert data["shares"][column] is None  # a span has no single route


def test_the_page_shows_tokens_without_word_marks(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = (Path(__file__).resolve().parents[2] / "src/attnflow/report/templates/report.js").read_text()
    function = re.search(r"function displayToken\(t\) \{.*?\n  \}", script, re.S).group(0)
    tokens = ["\u0120world", "\u2581New", "\u0120", "\u010a", "##ing", "[CLS]", "plain"]
    program = f"{function}\nconsole.log(JSON.stringify({json.dumps(tokens)}.map(displayToken)))"
    run = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == ["world", "New", "\u2423", "\u21b5", "##ing", "[CLS]", "plain"]
    assert "NAMES.forEach" in script and "return NAMES[i]" in script  # every token label goes through it
