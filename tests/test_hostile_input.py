"""Hostile and careless input (issue 17): every mistake is one clear line, nothing a user has is lost.

Grouped by what is attacked: the command line's parser, option values, output
paths, results files, image files, model folders, arrays and texts given to
the API, and interrupts. Most tests need no model; those that do use the
bundled MiniLM or the tiny test models.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import attnflow
from attnflow import AttnflowError
from attnflow.cli import main
from attnflow.graph import as_attention_array, check_keep_token, layer_list
from attnflow.io import (
    check_format,
    check_output_file,
    check_output_folder,
    read_json,
    write_bytes_atomic,
    write_folder,
    written_files,
)
from tests.helpers import patch_everywhere


def run_cli(capsys, *args) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "data.txt"
    path.write_text("The keys are on the table.\n")
    return path


# ------------------------------------------------------------------ usage errors: the parser's own

USAGE_ERRORS = [
    (["bogus"], "No such command 'bogus'"),
    (["explain", "hi", "--no-such-option"], "No such option: --no-such-option"),
    (["explain", "hi", "--residual", "abc"], "'--residual'"),
    (["explain", "hi", "--method"], "'--method' requires an argument"),
    (["explain", "hi", "extra", "args"], "unexpected extra argument"),
    (["evaluate"], "Missing option '--out'"),
    (["evaluate", "-o", "x"], "Give exactly one of --data (texts) and --images"),
    (["evaluate", "--data", "x.txt"], "Missing option '--out'"),
    (["heads", "--out", "o"], "Missing option '--data'"),
    (["report"], "Missing argument"),
    (["reproduce"], "Missing argument"),
    (["explain", "hi", "--layer", "two"], "'--layer'"),
    (["evaluate", "--data", "x", "--out", "o", "--percent", "ten"], "'--percent'"),
    (["explain", "--json"], "'--json' requires an argument"),
    (["explain", "hi", "--truncate=maybe"], "--truncate"),
    (["--no-such-flag"], "No such option"),
]


@pytest.mark.parametrize("args, message", USAGE_ERRORS)
def test_usage_errors_print_the_usage_line_and_exit_2(capsys, no_model, args, message):
    status, out, err = run_cli(capsys, *args)
    assert status == 2, err
    assert message in flat(err), err
    assert "Try 'attnflow" in err and "--help' for help." in err
    assert err.count("error:") == 1 and "Traceback" not in err + out


def test_a_usage_error_as_a_subprocess_has_no_traceback(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "attnflow", "explain", "hi", "--no-such-option"],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("Usage: attnflow explain") and "Traceback" not in result.stderr


# ------------------------------------------------------------------ option values, before any model

BAD_VALUES = [
    (["explain", "hi", "--head-fusion", "nonsense"], "--head-fusion", "mean, max, min, importance"),
    (["explain", "hi", "--residual", "1.5"], "--residual", "[0, 1]"),
    (["explain", "hi", "--residual", "nan"], "--residual", "[0, 1]"),
    (["explain", "hi", "--output", "first"], "--output", "cls, last, mean"),
    (["explain", "hi", "--layer", "0"], "--layer", "count from 1"),
    (["explain", "hi", "--method", "nope"], "--method", "Unknown method 'nope'"),
    (["explain", "hi", "--method", "rollout", "--method", "Flow"], "--method", "Unknown method 'Flow'"),
    (["explain", "--image", "x.png", "--image-size", "0x224"], "--image-size", "HEIGHTxWIDTH"),
    (["explain", "--image", "x.png", "--image-size", "big"], "--image-size", "HEIGHTxWIDTH"),
    (["evaluate", "--data", "D", "--out", "O", "--batch-size", "0"], "--batch-size", "[1, inf]"),
    (["evaluate", "--data", "D", "--out", "O", "--percent", "0"], "--percent", "[1, 100]"),
    (["evaluate", "--data", "D", "--out", "O", "--percent", "20", "--percent", "101"], "--percent", "[1, 100]"),
    (["evaluate", "--data", "D", "--out", "O", "--ig-steps", "0"], "--ig-steps", "[1, inf]"),
    (["evaluate", "--data", "D", "--out", "O", "--removal", "erase"], "--removal", "delete, blank"),
    (["evaluate", "--data", "D", "--out", "O", "--ground-truth", "oracle"], "--ground-truth", "blankout"),
    (["evaluate", "--data", "D", "--out", "O", "--head-fusion", "median"], "--head-fusion", "importance"),
    (["evaluate", "--data", "D", "--out", "O", "--faithfulness-layer", "0"], "--faithfulness-layer", "from 1"),
    (["evaluate", "--data", "D", "--out", "O", "--output", "middle"], "--output", "cls, last, mean"),
    (["heads", "--data", "D", "--out", "O", "--top", "-1"], "--top", "[0, inf]"),
    (["reproduce", "sva", "--n", "0"], "--n", "[1, inf]"),
    (["reproduce", "sva", "--method", "nope"], "--method", "Unknown method"),
]


@pytest.mark.parametrize("args, option, message", BAD_VALUES)
def test_bad_option_values_are_usage_errors_before_any_model(capsys, no_model, data_file, args, option, message):
    args = [str(data_file) if a == "D" else str(data_file.parent / "o") if a == "O" else a for a in args]
    status, out, err = run_cli(capsys, *args)
    assert status == 2, err
    assert f"Invalid value for '{option}" in flat(err) and message in flat(err), err
    assert err.count("error:") == 1 and "Traceback" not in err + out
    assert not (data_file.parent / "o").exists()


def test_head_fusion_help_names_what_a_command_line_can_give(capsys):
    status, out, _ = run_cli(capsys, "explain", "--help")
    assert status == 0
    help_text = flat(out)
    assert "importance" in help_text and "array" not in help_text


@pytest.mark.e2e
def test_a_layer_the_model_lacks_is_refused_before_any_attention_is_captured(capsys, monkeypatch):
    import attnflow.capture
    import attnflow.capture.plan

    def refuse(*args, **kwargs):
        raise AssertionError("attention was captured before --layer was checked")

    patch_everywhere(monkeypatch, attnflow.capture, "capture_attention", refuse)
    patch_everywhere(monkeypatch, attnflow.capture.plan, "capture_planned", refuse)
    status, _, err = run_cli(capsys, "explain", "hi", "--layer", "9")
    assert status == 2 and "--layer option must be from 1 to 6" in flat(err)


# ------------------------------------------------------------------ outputs: one policy

def test_report_never_writes_over_its_results_json(capsys, tmp_path):
    results = tmp_path / "self.json"
    original = json.dumps(_explanation_dict())
    results.write_text(original)
    for out in (results, tmp_path / "." / "self.json"):
        status, _, err = run_cli(capsys, "report", results, "-o", out)
        assert status == 2 and "ending in .html" in flat(err)
    assert results.read_text() == original
    link = tmp_path / "self.html"
    link.symlink_to(results)
    status, _, err = run_cli(capsys, "report", results, "-o", link)
    assert status == 2 and "one of this command's inputs" in flat(err)
    assert results.read_text() == original


def test_report_figures_never_replace_the_input(capsys, tmp_path):
    results = tmp_path / "fig-heatmap.png"  # a results file with a strange name is still an input
    results.write_text(json.dumps(_explanation_dict()))
    status, _, err = run_cli(capsys, "report", results, "--png", tmp_path / "fig.png")
    assert status == 2 and "one of this command's inputs" in flat(err)


def test_evaluate_never_writes_over_its_data_file(capsys, no_model, tmp_path):
    out = tmp_path / "out" / "x"
    out.mkdir(parents=True)
    data = out / "examples.csv"
    data.write_text("text\nThe keys are on the table.\n")
    status, _, err = run_cli(capsys, "evaluate", "--data", data, "--out", out)
    assert status == 2 and "its examples.csv would replace this command's input" in flat(err)
    assert data.read_text() == "text\nThe keys are on the table.\n"


def test_heads_never_writes_over_its_inputs(capsys, no_model, tmp_path):
    data = tmp_path / "heads.json"
    data.write_text('{"text": "A sentence."}\n')
    status, _, err = run_cli(capsys, "heads", "--data", data, "--out", tmp_path)
    assert status == 2 and "would replace this command's input" in flat(err)


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", "hi", "--json", "out.html"], "--json needs a file name ending in .json"),
        (["explain", "hi", "--html", "out.json"], "--html needs a file name ending in .html"),
        (["explain", "hi", "--png", "out.svg"], "--png needs a file name ending in .png"),
        (["explain", "hi", "--json", "missing/out.json"], "does not exist"),
        (["explain", "hi", "--json", "."], "it is a folder"),
        (["report", "R", "-o", "r.htm.txt"], "ending in .html or .htm"),
        (["report", "R", "--svg", "fig.png"], "--svg needs a file name ending in .svg"),
    ],
)
def test_output_paths_are_checked_before_any_model(capsys, no_model, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "R").write_text(json.dumps(_explanation_dict()))
    status, _, err = run_cli(capsys, *args)
    assert status == 2 and message in flat(err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R"]


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "private.json"
    path.write_text("{}")
    path.chmod(0o600)
    write_bytes_atomic(path, b"[1]")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"[1]"
    new = tmp_path / "new.json"
    write_bytes_atomic(new, b"[]")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask


def test_a_symlink_output_is_written_through(tmp_path):
    target = tmp_path / "real" / "r.json"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_bytes_atomic(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_a_dangling_symlink_creates_its_target_and_a_loop_is_refused(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "later.json")
    write_bytes_atomic(link, b"x")
    assert link.is_symlink() and (tmp_path / "later.json").read_bytes() == b"x"
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    with pytest.raises(AttnflowError, match="loops"):
        write_bytes_atomic(loop, b"x")


def test_write_folder_keeps_modes_and_writes_through_links(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "a.txt").chmod(0o600)
    elsewhere = tmp_path / "b-real.txt"
    elsewhere.write_text("old")
    (out / "b.txt").symlink_to(elsewhere)
    write_folder(out, {"a.txt": b"A", "b.txt": b"B", "c.txt": b"C"})
    assert (out / "a.txt").read_bytes() == b"A" and stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o600
    assert (out / "b.txt").is_symlink() and elsewhere.read_bytes() == b"B"
    assert (out / "c.txt").read_bytes() == b"C"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_runs_creating_the_same_folder_both_succeed(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_rename = os.rename

    def racing_rename(source, destination):  # another run creates the folder first
        if Path(destination) == out and not out.exists():
            out.mkdir()
            (out / "a.txt").write_bytes(b"first")
            (out / "other.txt").write_bytes(b"first")
        return real_rename(source, destination)

    monkeypatch.setattr(os, "rename", racing_rename)
    write_folder(out, {"a.txt": b"second"})
    assert (out / "a.txt").read_bytes() == b"second" and (out / "other.txt").read_bytes() == b"first"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_interrupted_folder_write_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    real = Path.write_bytes

    def interrupt_second(self, data):
        calls.append(self)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        write_folder(out, {"a.txt": b"1", "b.txt": b"2"})
    assert list(tmp_path.iterdir()) == []


def test_check_output_file_sees_through_hard_links(tmp_path):
    source = tmp_path / "in.json"
    source.write_text("{}")
    os.link(source, tmp_path / "alias.json")
    with pytest.raises(AttnflowError, match="one of this command's inputs"):
        check_output_file(tmp_path / "alias.json", "--json", (".json",), inputs=[source])
    check_output_file(tmp_path / "other.json", "--json", (".json",), inputs=[source, None])


def test_check_output_folder_allows_an_input_it_would_not_replace(tmp_path):
    (tmp_path / "texts.txt").write_text("x")
    check_output_folder(tmp_path, inputs=[tmp_path / "texts.txt"], names=["results.json", "examples.csv"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(AttnflowError, match="is a file"):
        check_output_folder(tmp_path / "file")


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=2000), mode=st.sampled_from([0o600, 0o640, 0o644, 0o664]))
def test_atomic_writes_keep_content_and_mode(tmp_path_factory, data, mode):
    path = tmp_path_factory.mktemp("w") / "f.bin"
    path.write_bytes(b"previous")
    path.chmod(mode)
    write_bytes_atomic(path, data)
    assert path.read_bytes() == data and stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


# ------------------------------------------------------------------ interrupts

@pytest.mark.parametrize("stage", ["load", "compute"])
def test_ctrl_c_says_nothing_was_written(capsys, monkeypatch, data_file, tmp_path, stage):
    import attnflow.capture
    import attnflow.evaluate

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    target = attnflow.capture if stage == "load" else attnflow.evaluate
    patch_everywhere(monkeypatch, target, "load_model" if stage == "load" else "evaluate", interrupt)
    args = ["evaluate", "--data", data_file, "--out", tmp_path / "o"] if stage == "compute" else ["explain", "hi"]
    status, _, err = run_cli(capsys, *args)
    assert status == 130 and "interrupted; nothing was written." in err
    assert not (tmp_path / "o").exists()


def test_ctrl_c_after_a_file_was_written_names_it(capsys, monkeypatch, tmp_path):
    import attnflow.commands.report as report_command

    results = tmp_path / "r.json"
    results.write_text(json.dumps(_explanation_dict()))
    real = report_command.write_report_files

    def write_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(report_command, "write_report_files", write_then_interrupt)
    status, _, err = run_cli(capsys, "report", results, "-o", tmp_path / "r.html")
    assert status == 130 and "interrupted; already written:" in err and "r.html" in err
    assert written_files()[-1] == tmp_path / "r.html"


# ------------------------------------------------------------------ results files

def _explanation_dict(**changes) -> dict:
    data = {
        "format": "attnflow.explanation",
        "version": 1,
        "text": "a b",
        "model": "toy",
        "tokens": ["a", "b"],
        "special_positions": [],
        "output": 0,
        "target": None,
        "options": {},
        "notes": [],
        "scores": {"rollout": [[0.6, 0.4], [0.7, 0.3]]},
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "text, message",
    [
        (json.dumps(_explanation_dict()).replace("0.6", "Infinity"), "Infinity is not a JSON number"),
        (json.dumps(_explanation_dict()).replace("0.6", "NaN"), "NaN is not a JSON number"),
        (json.dumps(_explanation_dict()).replace("0.6", "-Infinity"), "-Infinity is not a JSON number"),
        (json.dumps(_explanation_dict(version=999)), "format version 999; this attnflow reads versions up to 1"),
        (json.dumps(_explanation_dict(version="1")), "invalid 'version'"),
        (json.dumps(_explanation_dict(scores={})), "holds no scores"),
        (json.dumps(_explanation_dict(scores={"rollout": [[0.1, 0.2], [0.3]]})), "ragged or not numeric"),
        (json.dumps(_explanation_dict(scores={"rollout": [["a", "b"]]})), "ragged or not numeric"),
        (json.dumps(_explanation_dict(scores={"rollout": [[0.5, 0.5, 0.0]]})), "shape (L, 2)"),
        (json.dumps(_explanation_dict(tokens="ab")), "'tokens' must be a list of strings"),
        ("[" * 100000, "nested too deeply"),
        ("\ufeff{}", "JSON"),
        ("", "not valid JSON"),
        ("\xff\xfe", "JSON"),
        (json.dumps([1, 2]), "must hold an object"),
        (json.dumps({"format": "attnflow.report", "version": 99}), "format version 99"),
        (json.dumps({"format": "attnflow.evaluation", "version": 99, "correlation": {}}), "format version 99"),
    ],
)
def test_bad_results_files_are_one_line(capsys, tmp_path, text, message):
    path = tmp_path / "r.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if text != "\xff\xfe" else b"\xff\xfe")
    status, out, err = run_cli(capsys, "report", path, "-o", tmp_path / "r.html")
    assert status == 2 and message in flat(err), err
    assert err.count("error:") == 1 and "Traceback" not in err + out
    assert not (tmp_path / "r.html").exists()


def test_read_json_and_check_format_directly(tmp_path):
    with pytest.raises(AttnflowError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    with pytest.raises(AttnflowError, match="is a folder"):
        read_json(tmp_path)
    assert check_format({"format": "attnflow.heads"}, "attnflow.heads", 2) == 1  # no version: version 1
    with pytest.raises(AttnflowError, match="not an attnflow.heads file"):
        check_format({"format": "other"}, "attnflow.heads", 2)
    with pytest.raises(AttnflowError, match="invalid 'version'"):
        check_format({"format": "attnflow.heads", "version": True}, "attnflow.heads", 2)


def test_an_explanation_round_trips_and_older_files_without_a_version_load(tmp_path):
    path = tmp_path / "e.json"
    data = _explanation_dict()
    del data["version"]
    path.write_text(json.dumps(data))
    e = attnflow.Explanation.from_json(path)
    assert e.methods == ["rollout"] and e.n_layers == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(["tokens", "scores", "output", "special_positions", "options", "notes", "version", "text"]),
        json_values,
        max_size=3,
    )
)
def test_any_edit_of_an_explanation_json_loads_or_is_one_attnflow_error(changes):
    from attnflow.report.data import report_data_from_results

    data = _explanation_dict(**changes)
    try:
        report_data_from_results(json.loads(json.dumps(data)))
    except AttnflowError:
        pass


# ------------------------------------------------------------------ images

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` 1-bit pixels: a few bytes that would decode to gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    from attnflow.capture.image import load_image

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(AttnflowError, match="decompression bomb"):
        load_image(bomb)
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(9000, 9000))  # under Pillow's own limit, over attnflow's
    with pytest.raises(AttnflowError, match="81000000|9000x9000"):
        load_image(big)


def test_pillow_own_bomb_error_is_one_line(tmp_path, monkeypatch):
    from PIL import Image

    import attnflow.capture.image as capture_vision

    monkeypatch.setattr(capture_vision, "MAX_IMAGE_PIXELS", 10**12)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "small.png"
    path.write_bytes(_png_header_only(40, 40))
    with pytest.raises(AttnflowError, match="decompression bomb"):
        capture_vision.load_image(path)


@pytest.mark.e2e
def test_explain_image_bomb_from_the_command_line(capsys, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20000, 20000))
    status, out, err = run_cli(capsys, "explain", "--image", bomb, "--method", "rollout")
    assert status == 2 and "decompression bomb" in flat(err) and "Traceback" not in err + out


@pytest.mark.parametrize("content", [b"", b"GIF89a", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"<svg/>"])
def test_files_that_are_not_images(tmp_path, content):
    from attnflow.capture.image import load_image

    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(AttnflowError, match="Cannot read the image"):
        load_image(path)


def test_an_image_that_is_a_folder_or_missing_is_refused_before_a_model(capsys, no_model, tmp_path):
    status, _, err = run_cli(capsys, "explain", "--image", tmp_path)
    assert status == 2 and "is a folder" in flat(err)
    status, _, err = run_cli(capsys, "explain", "--image", tmp_path / "none.png")
    assert status == 2 and "does not exist" in flat(err)
    status, _, err = run_cli(capsys, "explain", "--image", tmp_path / "none.png", "--head-fusion", "importance")
    assert status == 2 and "for texts" in flat(err)


# ------------------------------------------------------------------ arrays given to the API

UNIFORM = np.full((2, 2, 3, 3), 1 / 3)


@pytest.mark.parametrize("keep_token", [99, -99, 3, -4, 1.5, "first", True, [0], np.float64(1.0)])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5])
def test_rollout_refuses_a_bad_keep_token_whether_or_not_it_discards(keep_token, discard_ratio):
    with pytest.raises(AttnflowError, match="'keep_token' parameter"):
        attnflow.rollout(UNIFORM, discard_ratio=discard_ratio, keep_token=keep_token)


def test_rollout_keep_token_names_and_negative_indices():
    a = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 2, 3))
    last = attnflow.rollout(a, discard_ratio=0.5, keep_token=2)
    assert np.array_equal(attnflow.rollout(a, discard_ratio=0.5, keep_token=-1), last)
    assert np.array_equal(attnflow.rollout(a, discard_ratio=0.5, keep_token="last"), last)
    assert np.array_equal(attnflow.rollout(a, discard_ratio=0.5, keep_token="cls"),
                          attnflow.rollout(a, discard_ratio=0.5, keep_token=0))


@settings(max_examples=80, deadline=None)
@given(keep=st.integers(min_value=-50, max_value=50), n=st.integers(min_value=1, max_value=6))
def test_keep_token_in_range_resolves_and_out_of_range_raises(keep, n):
    if -n <= keep < n:
        assert check_keep_token(keep, n) == keep % n
    else:
        with pytest.raises(AttnflowError):
            check_keep_token(keep, n)


@pytest.mark.parametrize("layers", [[], (), "1", 1.0, [1.0], [True], [0], [7], [-7], object()])
def test_attention_flow_refuses_bad_layers(layers):
    with pytest.raises(AttnflowError, match="'layers' parameter"):
        attnflow.attention_flow(UNIFORM, layers=layers)


@settings(max_examples=100, deadline=None)
@given(layers=st.lists(st.integers(min_value=-10, max_value=10), max_size=5), n_layers=st.integers(1, 6))
def test_layer_list_resolves_or_raises_attnflow_error(layers, n_layers):
    try:
        resolved = layer_list(layers, n_layers)
    except AttnflowError:
        assert not layers or any(not (1 <= v <= n_layers or -n_layers <= v <= -1) for v in layers)
    else:
        assert resolved == sorted({v if v > 0 else v + n_layers + 1 for v in layers})


def test_meta_and_odd_tensors_are_one_line():
    torch = pytest.importorskip("torch")
    with pytest.raises(AttnflowError, match="'meta' device"):
        attnflow.rollout(torch.full((2, 2, 3, 3), 1 / 3, device="meta"))
    assert attnflow.rollout(torch.full((2, 2, 3, 3), 1 / 3, dtype=torch.float16)).shape == (2, 3, 3)
    with pytest.raises(AttnflowError, match="NaN or infinite"):
        attnflow.rollout(torch.full((2, 2, 3, 3), float("nan")))


array_like = st.recursive(
    st.floats() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=2) | st.none(),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(value=array_like)
def test_any_nested_list_is_attention_or_one_attnflow_error(value):
    try:
        array = as_attention_array(value)
    except AttnflowError:
        return
    assert array.ndim == 4 and np.allclose(array.sum(-1), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    "options",
    [
        {"residual": True},
        {"residual": "0.5"},
        {"residual": -0.1},
        {"discard_ratio": 1.0},
        {"discard_ratio": None},
        {"head_fusion": "median"},
        {"head_fusion": np.ones(5)},
        {"head_fusion": -np.ones(2)},
        {"start_layer": 0},
        {"start_layer": 3},
    ],
)
def test_bad_rollout_options(options):
    with pytest.raises(AttnflowError):
        attnflow.rollout(UNIFORM, **options)


# ------------------------------------------------------------------ texts and models given to the API

@pytest.mark.parametrize("text", [["a", "b"], ("a",), None, b"bytes", 3])
def test_explain_wants_one_string(minilm, text):
    with pytest.raises(AttnflowError, match="'text' parameter must be one string"):
        attnflow.explain(text, minilm)


@pytest.mark.parametrize("text", ["\u200b\u200b", "\x00\x01\x02", "\u200d\ufeff", "\x7f"])
def test_a_text_with_no_real_tokens_is_the_empty_text_error(minilm, text):
    with pytest.raises(AttnflowError, match="empty or only whitespace"):
        attnflow.explain(text, minilm, methods="rollout")


def test_target_with_methods_that_ignore_it_says_so(minilm):
    e = attnflow.explain("The keys are on the table.", minilm, methods="rollout", target=1)
    assert any("target is ignored" in note for note in e.notes)
    e = attnflow.explain("The keys are on the table.", minilm, methods="rollout")
    assert not any("target" in note for note in e.notes)


def _copy_model(source: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(source, destination)
    return destination


def test_a_folder_with_auto_map_names_the_flag(tmp_path, tiny_bert_path):
    from attnflow.capture import load_model

    folder = _copy_model(tiny_bert_path, tmp_path / "remote")
    config = json.loads((folder / "config.json").read_text())
    for auto_map in ({"AutoModel": "modeling_evil.EvilModel"}, {"AutoConfig": "configuration_evil.EvilConfig"}):
        config["auto_map"] = auto_map
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(AttnflowError, match="--trust-remote-code"):
            load_model(folder)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless, but not a tensor: weights_only loading refuses it


def test_a_malicious_pickle_is_refused_without_unsafe_advice(tmp_path, tiny_bert_path):
    torch = pytest.importorskip("torch")
    from attnflow.capture import load_model

    folder = _copy_model(tiny_bert_path, tmp_path / "pickled")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": _Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(AttnflowError) as info:
        load_model(folder)
    message = str(info.value)
    assert "weights_only" not in message and "False" not in message
    assert "\n" not in message


# ------------------------------------------------------------------ replacing files attnflow did not write

def test_a_foreign_file_is_replaced_only_with_overwrite(capsys, tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_explanation_dict()))
    page = tmp_path / "page.html"
    page.write_text("<html>my own notes</html>")
    status, _, err = run_cli(capsys, "report", results, "-o", page)
    assert status == 2 and "not a file attnflow wrote" in flat(err) and "--overwrite" in err
    assert page.read_text() == "<html>my own notes</html>"
    assert run_cli(capsys, "report", results, "-o", page, "--overwrite")[0] == 0
    assert "attnflow" in page.read_text()
    assert run_cli(capsys, "report", results, "-o", page)[0] == 0  # now attnflow's own: replaced freely


def test_a_foreign_json_in_a_results_folder_is_kept(capsys, no_model, tmp_path, data_file):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"mine": true}')
    status, _, err = run_cli(capsys, "evaluate", "--data", data_file, "--out", out)
    assert status == 2 and "results.json" in err and "--overwrite" in err
    assert (out / "results.json").read_text() == '{"mine": true}'


@pytest.mark.parametrize(
    "name, content, replaceable",
    [
        ("a.json", '{"format": "attnflow.evaluation", "version": 1}', True),
        ("a.json", '  {\n  "format":"attnflow.heads"}', True),
        ("a.json", '{"name": "x", "format": "attnflow.explanation"}', False),
        ("a.json", "[]", False),
        ("a.html", '<!DOCTYPE html><meta name="generator" content="attnflow 0.1.0">', True),
        ("a.html", "<html></html>", False),
        ("a.png", "\x89PNG\r\n\x1a\n....", True),
        ("a.png", "not a png", False),
        ("a.svg", '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', True),
        ("a.svg", "plain text", False),
        ("a.csv", "a,b\n", True),
        ("a.py", "print()", False),
    ],
)
def test_which_existing_files_are_attnflow_own(tmp_path, name, content, replaceable):
    from attnflow.io import is_replaceable

    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    assert is_replaceable(path) is replaceable
    if not replaceable:
        with pytest.raises(AttnflowError, match="--overwrite"):
            check_output_file(path, "--x", (path.suffix,))
        check_output_file(path, "--x", (path.suffix,), overwrite=True)


@pytest.mark.e2e
def test_explain_json_through_a_private_symlink(capsys, tmp_path):
    target = tmp_path / "private" / "e.json"
    target.parent.mkdir()
    target.write_text(json.dumps(_explanation_dict()))
    target.chmod(0o600)
    link = tmp_path / "e.json"
    link.symlink_to(target)
    status, _, err = run_cli(capsys, "explain", "The keys are here.", "--method", "rollout", "--json", link)
    assert status == 0, err
    assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text())["tokens"][0] == "[CLS]"


def test_report_png_from_scores_only_says_there_is_no_graph(capsys, tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_explanation_dict()))
    status, out, err = run_cli(capsys, "report", results, "--png", tmp_path / "fig.png")
    assert status == 0, err
    assert "no attention graph figure" in flat(err)
    assert (tmp_path / "fig-heatmap.png").is_file() and not (tmp_path / "fig-graph.png").exists()


# ------------------------------------------------------------------ the Python API, called carelessly

ODD_VALUES = [None, -1, 0, 99, 1.5, "cls", "x", "", True, [0], [], (0, 1), np.nan, float("inf"), {}, b"cls"]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_careless_api_arguments_are_attnflow_errors_or_work(value):
    """Every entry point, every odd value: it works or raises AttnflowError, never a TypeError/IndexError."""
    e = attnflow.explain_attentions(UNIFORM, ["x", "y", "z"], methods=("raw", "rollout"))
    calls = [
        lambda: attnflow.attention_flow(UNIFORM, outputs=value),
        lambda: attnflow.attention_flow(UNIFORM, normalize=value),
        lambda: attnflow.rollout(UNIFORM, start_layer=value),
        lambda: attnflow.rollout(UNIFORM, residual=value),
        lambda: attnflow.rollout(UNIFORM, discard_ratio=value),
        lambda: attnflow.rollout(UNIFORM, head_fusion=value),
        lambda: attnflow.explain_attentions(UNIFORM, output=value),
        lambda: attnflow.explain_attentions(UNIFORM, methods=value),
        lambda: attnflow.explain_attentions(UNIFORM, tokens=value),
        lambda: attnflow.explain_attentions(UNIFORM, methods="grad-rollout", gradients=value),
        lambda: e.layer_scores("rollout", value),
        lambda: e.layer_scores(value),
        lambda: e.top_tokens("rollout", k=value),
    ]
    for call in calls:
        try:
            call()
        except AttnflowError:
            pass


@pytest.mark.parametrize(
    "value",
    [
        np.ones((1, 1, 1), dtype=complex),
        [[[1 + 0j]]],
        [[[1.0]], [[0.5, 0.5]]],
        [np.eye(2), np.eye(3)],
        [],
        {"a": 1},
        np.array([[[object()]]]),
        np.ones((2, 3, 4, 4, 1)),
        np.ones((2, 2, 3, 4)) / 4,
        np.zeros((0, 1, 1, 1)),
        [[[2**80]]],
    ],
    ids=lambda v: type(v).__name__ + str(getattr(v, "shape", "")),
)
def test_malformed_attention_is_one_attnflow_error(value):
    with pytest.raises(AttnflowError):
        attnflow.rollout(value)


def test_complex_tensors_are_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(AttnflowError, match="real numbers"):
        attnflow.rollout(torch.ones((1, 1, 1), dtype=torch.complex64))


def test_an_interrupt_while_renaming_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text("old")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomic(path, b"new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.e2e
def test_ctrl_c_during_the_methods_writes_no_json(capsys, monkeypatch, tmp_path):
    from attnflow import core

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    patch_everywhere(monkeypatch, core, "explain_attentions", interrupt)  # after capture, while the core runs
    status, _, err = run_cli(capsys, "explain", "hi there", "--method", "flow", "--json", tmp_path / "e.json")
    assert status == 130 and "interrupted; nothing was written." in err
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=100, deadline=None)
@given(
    key=st.sampled_from(
        ["tokens", "scores", "outputs", "output", "layer", "attention", "evaluation", "image", "notes", "n_layers"]
    ),
    value=json_values,
)
def test_any_edit_of_report_data_loads_or_is_one_attnflow_error(tmp_path_factory, key, value):
    from attnflow.report.data import load_report_data, report_data

    data = report_data(np.full((1, 1, 2, 2), 0.5)).to_dict()
    data[key] = value
    path = tmp_path_factory.mktemp("r") / "r.json"
    path.write_text(json.dumps(data))
    try:
        load_report_data(path)
    except AttnflowError:
        pass


@pytest.mark.e2e
@pytest.mark.parametrize("size, message", [((100000, 100000), "megapixels"), ((4000, 4000), "GiB")])
def test_an_image_size_whose_attention_cannot_fit_is_refused(size, message):
    with pytest.raises(AttnflowError, match=message):
        attnflow.explain_image(np.zeros((8, 8), np.uint8), "digits-vit", methods="rollout", size=size)


@pytest.mark.e2e
def test_a_huge_image_size_on_the_command_line(capsys, tmp_path):
    from attnflow.tasks.digits import digits_test_set, save_digit_png

    images, _ = digits_test_set(1)
    path = save_digit_png(images[0], tmp_path / "digit.png")
    status, out, err = run_cli(capsys, "explain", "--image", path, "--image-size", "100000x100000")
    assert status == 2 and "megapixels" in flat(err) and "Traceback" not in err + out


@pytest.mark.parametrize(
    "args",
    [
        ["report", "R", "-o", "LONG.html"],
        ["report", "R", "--png", "LONG.png"],
        ["evaluate", "--data", "R", "--out", "LONG"],
        ["explain", "hi", "--json", "LONG.json"],
        ["explain", "--image", "LONG.png"],
        ["report", "LONG.json", "-o", "x.html"],
    ],
)
def test_a_file_name_too_long_is_one_line(capsys, no_model, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "R").write_text(json.dumps(_explanation_dict()))
    args = [a.replace("LONG", "a" * 300) for a in args]
    status, out, err = run_cli(capsys, *args)
    assert status == 2 and err.count("error:") == 1 and "Traceback" not in err + out, err


def test_sigterm_stops_a_command_like_ctrl_c(capsys, monkeypatch, tmp_path):
    import signal

    import attnflow.capture

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    patch_everywhere(monkeypatch, attnflow.capture, "load_model", terminated)
    status, _, err = run_cli(capsys, "explain", "hi", "--json", tmp_path / "e.json")
    assert status == 130 and "interrupted; nothing was written." in err
    assert list(tmp_path.iterdir()) == [] and signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("command", ["evaluate", "heads", "report"])
def test_an_endless_input_is_refused(capsys, no_model, tmp_path, command):
    endless = tmp_path / "zero.txt"
    endless.symlink_to("/dev/zero")
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)
    for source in (endless, pipe):
        args = [source, "-o", tmp_path / "r.html"]
        if command != "report":
            args = ["--data", source, "--out", tmp_path / "o"]
        status, _, err = run_cli(capsys, command, *args)
        assert status == 2 and "not a regular file" in flat(err), err


# ------------------------------------------------------------------ the probe round of issue 28 (display, API)


def test_d12_head_fusion_with_only_context_mixing_graphs_is_refused_before_any_model(capsys, no_model):
    status, out, err = run_cli(capsys, "explain", "The keys are here.", "--graph", "alti", "--head-fusion",
                               "importance")
    assert status == 2 and "--head-fusion importance combines attention heads" in flat(err), err
    assert "--graph attention" in flat(err) and "Traceback" not in err + out


@pytest.mark.e2e
def test_d12_importance_fusion_beside_a_context_mixing_graph_runs(capsys):
    status, out, err = run_cli(capsys, "explain", "The keys are here.", "--graph", "alti", "--graph", "attention",
                               "--head-fusion", "importance", "--method", "rollout")
    assert status == 0, err
    assert "alti/rollout" in out and "head_fusion applies to the attention graph only" in flat(out)
    with pytest.raises(AttnflowError, match="'head_fusion' option combines attention heads"):
        attnflow.explain("The keys are here.", methods="rollout", graph="alti", head_fusion="max")


def test_d13_no_output_is_written_over_the_heads_file(capsys, no_model, tmp_path):
    folder = tmp_path / "h"
    folder.mkdir()
    heads_file = folder / "heads.json"
    heads_file.write_text('{"format": "attnflow.heads"}')
    before = heads_file.read_bytes()
    for option, target in (("--json", heads_file), ("--json", folder / "." / "heads.json")):
        status, out, err = run_cli(capsys, "explain", "The keys are here.", "--model", "sva", "--heads-file",
                                   heads_file, option, target, "--html", folder / "x.html")
        assert status == 2 and "one of this command's inputs" in flat(err), err
        assert heads_file.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["heads.json"]


@pytest.mark.e2e
def test_d14_words_show_escapes_as_text_and_keep_combining_marks(capsys, tmp_path):
    text = "x\x1b[31mRED cafe\u0301 done"
    status, out, err = run_cli(capsys, "explain", text, "--words", "--method", "rollout", "--json",
                               tmp_path / "w.json")
    assert status == 0, err
    assert "\x1b" not in out and "x\\x1b[31mRED" in out
    labels = json.loads((tmp_path / "w.json").read_text())["words"]["labels"]
    assert "cafe\u0301" in labels  # the accent the uncased tokenizer drops is still the word's
    assert "cafe\u0301" in out


def _huge_attention(kind: str):
    if kind == "torch expand":
        import torch

        return torch.tensor(1 / 60000, dtype=torch.float32).expand(12, 1, 60000, 60000)
    if kind == "list of layers":
        return [np.broadcast_to(np.float64(1 / 60000), (1, 60000, 60000))] * 12
    return np.broadcast_to(np.float64(1 / 60000), (12, 1, 60000, 60000))


@pytest.mark.parametrize("kind", ["numpy view", "torch expand", "list of layers"])
@pytest.mark.parametrize("call", ["rollout", "attention_flow", "solve_flow", "from_attentions"])
def test_d15_attention_too_large_for_memory_is_refused_naming_its_size(monkeypatch, kind, call):
    """A 60000-token view takes no memory; its float64 copy would be 322 GiB (a list's single layer 27 GiB)."""
    import attnflow.graph
    from attnflow.graph import AttentionGraph, check_array_size, memory_bytes

    assert memory_bytes() is None or memory_bytes() > 2**30
    monkeypatch.setattr(attnflow.graph, "memory_bytes", lambda: 16 * 2**30)  # as on a 16 GiB machine
    function = AttentionGraph.from_attentions if call == "from_attentions" else getattr(attnflow, call)
    with pytest.raises(AttnflowError, match=r"has shape \(.*60000, 60000\): as float64 it would take \d+ GiB, "
                       "more than the 16 GiB of memory there is"):
        function(_huge_attention(kind))
    check_array_size((12, 1, 600, 600), "attentions", limit=2**30)  # 0.03 GiB: fine
    with pytest.raises(AttnflowError, match="more than the 1 GiB"):
        check_array_size((12, 1, 6000, 6000), "attentions", limit=2**30)


def test_a_tiny_max_flow_seconds_is_reported_as_a_time(capsys, no_model):
    from attnflow.commands.explain import _check_flow_time

    with pytest.raises(AttnflowError) as caught:
        _check_flow_time((6, 1, 10, 10), False, 1e-9)
    message = str(caught.value)
    assert "estimated at 0 s" not in message and "--max-flow-seconds 1e-09" in message
    assert float(message.split("estimated at ")[1].split(" s")[0]) > 0


def test_an_unwritable_out_folder_is_refused_before_any_work(capsys, no_model, data_file):
    place = Path("/sys/fs")  # read-only even for root, where permission bits are not enough
    if not place.is_dir() or os.access(place, os.W_OK) and _can_write(place):
        pytest.skip("no read-only folder here")
    for command in ("evaluate", "heads"):
        status, out, err = run_cli(capsys, command, "--data", data_file, "--out", place / "attnflow-out")
        assert status == 2 and "is not writable" in flat(err), err


def _can_write(place: Path) -> bool:
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(dir=place))
    except OSError:
        return False
    return True


def test_a_nan_gate_penalty_is_a_usage_error_before_any_model(capsys, no_model, data_file):
    for value in ("nan", "inf", "-1"):
        status, _, err = run_cli(capsys, "heads", "--data", data_file, "--out", data_file.parent / "o", "--gates",
                                 "--penalty", value)
        assert status == 2 and "Invalid value for '--penalty'" in flat(err), err


def test_an_image_that_is_a_pipe_is_refused_without_blocking(capsys, no_model, tmp_path):
    from attnflow.capture.image import load_image

    pipe = tmp_path / "digit.png"
    os.mkfifo(pipe)
    status, _, err = run_cli(capsys, "explain", "--image", pipe)
    assert status == 2 and "not a regular file" in flat(err), err
    with pytest.raises(AttnflowError, match="not a regular file"):
        load_image(pipe)


def test_api_messages_name_what_the_caller_gave():
    with pytest.raises(AttnflowError, match="must be a FlowSolution .*got NoneType"):
        attnflow.verify_flow(None)
    with pytest.raises(AttnflowError, match=r"got 2\.0 instead") as caught:
        attnflow.rollout(np.full((2, 1, 3, 3), 1 / 3), residual=np.float64(2))
    assert "np." not in str(caught.value)
    with pytest.raises(AttnflowError, match="The 'generate' parameter must be an integer >= 1"):
        attnflow.explain("hi", methods="rollout", generate=0)


def test_half_precision_rows_get_half_precision_advice():
    import torch

    torch.manual_seed(0)
    weights = torch.softmax(torch.randn(2, 2, 50, 50).bfloat16() * 3, -1)
    with pytest.raises(AttnflowError, match="bfloat16 keeps about 3 significant digits") as caught:
        attnflow.rollout(weights)
    assert "Remove padding" not in str(caught.value)
    attnflow.rollout(weights.float() / weights.float().sum(-1, keepdim=True))  # the advice works


def test_a_weight_shape_mismatch_says_what_is_wrong(tmp_path):
    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model("bert", tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(AttnflowError, match="some weights do not have the shapes its config.json gives") as caught:
        attnflow.explain("hi", str(folder), "rollout")
    assert "above report" not in str(caught.value)


@pytest.mark.e2e
def test_a_tokenizer_that_does_not_know_the_text_is_noted(tmp_path):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "."]
    folder = tmp_path / "small-tokenizer"
    BertTokenizer(vocab={word: index for index, word in enumerate(words)}).save_pretrained(folder)
    e = attnflow.explain("The keys are here.", "minilm", "rollout", tokenizer=str(folder))
    assert e.tokens.count("[UNK]") == 3
    assert any("3 of 7 tokens are the unknown token [UNK]" in note for note in e.notes), e.notes
    assert not any("unknown token" in note for note in attnflow.explain("The keys.", "minilm", "rollout").notes)
