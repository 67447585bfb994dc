"""run_batch with decoder_column= (--decoder-column): encoder-decoder rows equal attnflow.explain(decoder_text=...)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import transformers

import attnflow
from attnflow import cli
from attnflow.batch import read_explanation, read_results, run_batch
from attnflow.errors import AttnflowError
from attnflow.explainers.seq2seq import Seq2SeqExplanation
from tests.batch.conftest import write_jsonl
from tests.tolerances import model_float32_bound

PAIRS = [("7 2 9", "9 2 7"), ("1 2 3 4", "4 3 2 1"), ("5 5", ""), ("8 6 4 2 0", "0 2 4 6 8")]
METHODS = ["raw", "rollout", "flow", "grad-rollout"]


@pytest.fixture(scope="module")
def reverse():
    from attnflow.capture import load_model

    return load_model("reverse")


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory, reverse):
    """Four source/target pairs (one with a blank target) on the bundled reverse model, shards of two rows."""
    folder = tmp_path_factory.mktemp("seq2seq")
    data = write_jsonl(folder / "pairs.jsonl", [{"source": s, "reversed": t} for s, t in PAIRS])
    result = run_batch(data, folder / "out", reverse, METHODS, text_column="source", decoder_column="reversed",
                       shard_size=2, workers=1)
    return data, folder / "out", result


def test_rows_are_attnflow_explain_with_the_decoder_text(pairs_run, reverse):
    _, out, result = pairs_run
    frame = read_results(out)
    assert result.summary["skipped"] == [{"example": 2, "reason": "empty decoder text"}]
    for example, (source, target) in enumerate(PAIRS):
        rows = frame[frame["example"] == example]
        if not target:
            assert rows.empty
            continue
        expected = attnflow.explain(source, reverse, methods=METHODS, decoder_text=target)  # one pair alone
        assert isinstance(expected, Seq2SeqExplanation)
        first = rows.iloc[0]
        assert list(first["tokens"]) == expected.tokens and first["source_length"] == expected.source_length
        assert first["decoder_text"] == target and first["predicts"] == expected.seq2seq["predicts"]
        assert first["output"] == str(expected.output)
        for method in METHODS:
            got = rows[rows["method"] == method].sort_values("layer")
            assert got["layer"].tolist() == list(range(1, expected.seq2seq["decoder_layers"] + 1))
            # two float32 runs (a batch, one pair alone); grad-rollout's backward pass too, scaled by its size
            bound = model_float32_bound(reverse.model.config, scale=max(1.0, np.abs(expected.scores[method]).max()),
                                        backward=method == "grad-rollout")
            np.testing.assert_allclose(np.stack(got["scores"].tolist()), expected.scores[method], rtol=0, atol=bound)
        assert json.loads(rows[rows["method"] == "grad-rollout"]["target"].iloc[0]) == expected.target


def test_a_row_reads_back_as_a_seq2seq_explanation(pairs_run):
    _, out, _ = pairs_run
    back = read_explanation(out, 1)
    assert isinstance(back, Seq2SeqExplanation)
    assert back.source_tokens == ["1", "2", "3", "4", "</s>"] and back.target_tokens[1:] == ["4", "3", "2", "1"]


def test_the_decoder_column_is_in_the_manifest(pairs_run, reverse):
    data, out, _ = pairs_run
    assert json.loads((out / "manifest.json").read_text())["options"]["decoder_column"] == "reversed"
    with pytest.raises(AttnflowError, match="has no decoder column 'target'"):
        run_batch(data, out, reverse, METHODS, text_column="source", decoder_column="target", workers=1)


def test_a_tiny_bart_from_the_command_line(tmp_path, capsys):
    from tests.seq2seq_models import save_seq2seq_model

    path = save_seq2seq_model("bart", tmp_path / "bart")
    pairs = [("the cat sat on the mat", "le chat est assis"), ("a dog ran", "un chien court")]
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"text": s, "target": t} for s, t in pairs])
    status = cli.main(["batch", "--data", str(data), "--out", str(tmp_path / "out"), "--model", str(path),
                       "--decoder-column", "target", "--method", "rollout", "--workers", "1"])
    assert status == 0, capsys.readouterr().err
    frame = read_results(tmp_path / "out")
    config = transformers.AutoConfig.from_pretrained(path)
    for example, (source, target) in enumerate(pairs):
        expected = attnflow.explain(source, str(path), methods="rollout", decoder_text=target)
        got = np.stack(frame[frame["example"] == example].sort_values("layer")["scores"].tolist())
        np.testing.assert_allclose(got, expected.scores["rollout"], rtol=0,
                                   atol=model_float32_bound(config))  # two float32 runs


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (None, {"decoder_column": "target"}, "is for encoder-decoder models .* 'minilm' is encoder-only"),
        ("reverse", {}, "'reverse' is an encoder-decoder model: name the column of each row's target"),
        ("no-such-model", {"decoder_column": "target", "graphs": "alti"}, "a context-mixing graph .--graph. cannot"),
        ("no-such-model", {"decoder_column": "target", "evaluation": True}, "evaluation .--evaluate. cannot"),
    ],
)
def test_decoder_column_errors(tmp_path, model, kwargs, message):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"text": "7 2 9", "target": "9 2 7"}])
    with pytest.raises(AttnflowError, match=message):
        run_batch(data, tmp_path / "out", model, "rollout", workers=1, **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_decoder_column_error_is_one_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"text": "7 2 9"}])
    status = cli.main(["batch", "--data", str(data), "--out", str(tmp_path / "out"), "--model", "reverse",
                       "--decoder-column", "target", "--workers", "1"])
    err = " ".join(capsys.readouterr().err.split())
    assert status == 2 and "has no decoder column 'target'" in err and "Traceback" not in err


def test_attribution_methods_are_one_row_at_the_input_and_read_back(tmp_path, reverse):
    pairs = PAIRS[:2]
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"source": s, "reversed": t} for s, t in pairs])
    out = tmp_path / "out"
    run_batch(data, out, reverse, ["rollout", "saliency", "random"], text_column="source", decoder_column="reversed",
              workers=1, attribution={"seed": 4})
    frame = read_results(out)
    for example, (source, target) in enumerate(pairs):
        rows = frame[frame["example"] == example]
        expected = attnflow.explain(source, reverse, methods=["saliency"], decoder_text=target)
        saliency = rows[rows["method"] == "saliency"]
        assert saliency["layer"].tolist() == [0]  # the input: one row
        # two float32 runs of the forward and backward pass, scaled by the gradient's size
        bound = model_float32_bound(reverse.model.config, scale=float(np.abs(expected.scores["saliency"]).max()),
                                    backward=True)
        np.testing.assert_allclose(saliency["scores"].iloc[0], expected.scores["saliency"][0], rtol=0, atol=bound)
        prefix = expected.source_length + expected.seq2seq["position"] + 1
        drawn = np.random.default_rng([4, example]).random(prefix)  # the random baseline: seeded by the example
        random = np.asarray(rows[rows["method"] == "random"]["scores"].iloc[0])
        np.testing.assert_array_equal(random, np.concatenate([drawn, np.zeros(len(expected.tokens) - prefix)]))
    back = read_explanation(out, 1)
    assert isinstance(back, Seq2SeqExplanation) and back.options["input_methods"] == {"saliency": "input",
                                                                                     "random": "input"}
    assert back.scores["saliency"].shape == back.scores["rollout"].shape  # the same row at every decoder layer
