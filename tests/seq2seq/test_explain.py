"""attnflow.explain and `attnflow explain` on encoder-decoder models, end to end.

Tiny random T5, BART and Marian models and the bundled ``reverse`` model. The
references are computed here from the model's own forward pass (transformers,
eager attention, output_attentions=True) and its own ``generate``, not from
attnflow's capture.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import attnflow
from attnflow import AttnflowError
from attnflow.cli import main
from attnflow.explainers.seq2seq import Seq2SeqExplanation
from tests.tolerances import EPS64, float32_sum_bound, flow_bound, model_float32_bound

SOURCES = {"t5": "the cat sat on the mat", "bart": "a dog ran to the park", "marian": "the cat sat on the mat"}
TARGETS = {"t5": "le chat est assis", "bart": "un chien court", "marian": "le chat est assis sur le tapis"}
ALL = ["raw", "rollout", "flow", "grad-rollout"]


def hf_forward(path, source, target):
    """The model's own attentions (fused over heads) and its decoder input, without attnflow."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path, attn_implementation="eager").eval()
    src = tokenizer(source, return_tensors="pt")["input_ids"]
    tgt = tokenizer(text_target=target)["input_ids"][:-1]  # the end-of-sequence token dropped
    dec = torch.tensor([[model.config.decoder_start_token_id, *tgt]])
    with torch.no_grad():
        out = model(input_ids=src, decoder_input_ids=dec, output_attentions=True, use_cache=False)
    fuse = [np.stack([a[0].double().mean(0).numpy() for a in group])
            for group in (out.encoder_attentions, out.decoder_attentions, out.cross_attentions)]
    return fuse, src[0].tolist(), dec[0].tolist(), out.logits[0].double()


def block_rollout(enc, dec, cross, r=0.5):
    """Rollout through both stacks from the block formulas (un-layered), ``(Ld, nt, ns + nt)``."""
    ns, nt = enc.shape[-1], dec.shape[-1]
    top = np.eye(ns)
    for a in enc:
        top = ((1 - r) * a + r * np.eye(ns)) @ top
    rows = np.hstack([np.zeros((nt, ns)), np.eye(nt)])  # target embeddings
    source_rows = np.hstack([top, np.zeros((ns, nt))])  # the encoder's top layer, over the inputs
    out = []
    for s, c in zip(dec, cross, strict=True):
        rows = ((1 - r) * s + r * np.eye(nt)) @ rows
        rows = r * rows + (1 - r) * c @ source_rows
        out.append(rows)
    return np.stack(out)


def test_explain_matches_the_models_own_attention(seq2seq_paths):
    for arch, path in seq2seq_paths.items():
        source, target = SOURCES[arch], TARGETS[arch]
        e = attnflow.explain(source, path, ALL, decoder_text=target)
        assert isinstance(e, Seq2SeqExplanation)
        (enc, dec, cross), src_ids, dec_ids, logits = hf_forward(path, source, target)
        ns, nt = len(src_ids), len(dec_ids)
        assert e.source_length == ns and len(e.target_tokens) == nt, arch
        t = nt - 2  # default: the position that predicts the last target token
        assert e.output == ns + t and e.seq2seq["position"] == t
        config = transformers.AutoConfig.from_pretrained(path)
        expected = block_rollout(enc, dec, cross)[:, t]  # another float32 run of the model: both stacks' depth
        np.testing.assert_allclose(e.scores["rollout"], expected, rtol=0, atol=model_float32_bound(config),
                                   err_msg=arch)
        log_p = torch.log_softmax(logits[t], -1)[dec_ids[t + 1]].item()
        # log p = z - logsumexp(z): each of the two terms off by at most a logit's difference
        bound = 2 * model_float32_bound(config, scale=max(1.0, float(logits[t].abs().max())))
        assert e.seq2seq["log_probability"] == pytest.approx(log_p, abs=bound)
        n_dec = dec.shape[0]
        assert e.scores["flow"].shape == (n_dec, ns + nt)
        # float64 walks (rollout, sums) over the L layers of both stacks, ns + nt nodes each; max-flow over
        # their arcs (n^2 per attention layer, and as many again for the cross and residual arcs)
        float64_bound = (len(enc) + n_dec) * (ns + nt) * EPS64
        flows = flow_bound(2 * (len(enc) + n_dec) * (ns + nt) ** 2)
        for name in ("rollout", "flow"):
            np.testing.assert_allclose(e.scores[name].sum(1), 1.0, rtol=0, atol=float64_bound)
            later = e.scores[name][:, ns + t + 1:]  # causal: nothing from later
            assert np.all(later == 0) if name == "rollout" else np.abs(later).max() <= flows, (arch, name)
            assert np.all(e.scores[name] >= -flows)
        # the finding of docs/seq2seq.md: rollout's source share after decoder layer l is 1 - r^l
        np.testing.assert_allclose(e.source_share("rollout"), 1 - 0.5 ** np.arange(1, n_dec + 1), rtol=0,
                                   atol=float64_bound)
        assert np.all(np.isfinite(e.scores["grad-rollout"])) and np.all(e.scores["grad-rollout"] >= 0)
        assert e.target["token_id"] == dec_ids[t + 1] and e.target["kind"] == "next"


def test_output_picks_the_decoder_position(seq2seq_paths):
    path = seq2seq_paths["marian"]
    e = attnflow.explain(SOURCES["marian"], path, ["rollout", "flow"], output=1, decoder_text=TARGETS["marian"])
    ns = e.source_length
    assert e.output == ns + 1 and e.seq2seq["predicts"] == e.target_tokens[2]
    flows = flow_bound(2 * (2 + 3) * len(e.tokens) ** 2)  # max-flow over 2 + 3 layers' arcs (as in the test above)
    assert np.abs(e.scores["flow"][:, ns + 2:]).max() <= flows and e.scores["flow"].shape[0] == 3
    last = attnflow.explain(SOURCES["marian"], path, "raw", output="last", decoder_text=TARGETS["marian"])
    assert last.output == len(last.tokens) - 1 and last.seq2seq["predicts"] is None


def test_generate_is_the_models_greedy_continuation(seq2seq_paths):
    for arch in ("t5", "bart"):
        path = seq2seq_paths[arch]
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path).eval()
        src = tokenizer(SOURCES[arch], return_tensors="pt")["input_ids"]
        produced = model.generate(src, max_new_tokens=4, min_new_tokens=4, do_sample=False, num_beams=1,
                                  eos_token_id=None, forced_eos_token_id=None)[0].tolist()
        e = attnflow.explain(SOURCES[arch], path, ["rollout"], generate=4)
        eos = tokenizer.eos_token_id
        expected = produced[: produced.index(eos, 1)] if eos in produced[1:] else produced
        assert e.seq2seq["generated"] and len(e.target_tokens) == len(expected), arch
        assert e.target_tokens == tokenizer.convert_ids_to_tokens(expected), arch


def test_json_round_trip(seq2seq_paths, tmp_path):
    e = attnflow.explain(SOURCES["t5"], seq2seq_paths["t5"], ["raw", "rollout"], decoder_text=TARGETS["t5"])
    path = tmp_path / "e.json"
    e.to_json(path)
    back = Seq2SeqExplanation.from_dict(json.loads(path.read_text()))
    assert back.tokens == e.tokens and back.output == e.output and back.source_length == e.source_length
    np.testing.assert_allclose(back.scores["rollout"], e.scores["rollout"])
    assert back.seq2seq["source_share"]["rollout"] == pytest.approx(e.source_share("rollout").tolist())


def test_reverse_end_to_end_puts_the_aligned_digit_first():
    e = attnflow.explain("7 2 9 4", "reverse", ["rollout", "flow"], decoder_text="4 9 2 7")
    assert e.source_tokens == ["7", "2", "9", "4", "</s>"] and e.seq2seq["predicts"] == "7"
    assert e.seq2seq["log_probability"] > np.log(0.9)
    raw = attnflow.explain("7 2 9 4", "reverse", "raw", decoder_text="4 9 2 7")
    assert int(np.argmax(raw.scores["raw"][-1, :4])) == 0  # '7' is the digit being copied


def run_cli(capsys, *args):
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.e2e
def test_cli_table_and_json(capsys, tmp_path):
    path = tmp_path / "out.json"
    status, out, err = run_cli(
        capsys, "explain", "--model", "reverse", "7 2 9 4", "--decoder-text", "4 9 2 7",
        "--method", "rollout", "--method", "flow", "--json", str(path),
    )
    assert status == 0, err
    text = " ".join(out.split())
    assert "which predicts 7" in text and "source share" in text and "rollout 0.75" in text
    assert "target ▸" in out and "source" in out
    data = json.loads(path.read_text())
    assert data["seq2seq"]["source_length"] == 5 and data["output"] == 8
    assert data["seq2seq"]["source_share"]["rollout"] == pytest.approx([0.5, 0.75])


@pytest.mark.e2e
def test_cli_generate_output_and_layer(capsys, seq2seq_paths):
    status, out, err = run_cli(
        capsys, "explain", "--model", str(seq2seq_paths["bart"]), SOURCES["bart"], "--generate", "3",
        "--output", "1", "--layer", "1", "--method", "raw", "--method", "grad-rollout", "--target", "predicted",
    )
    assert status == 0, err
    text = " ".join(out.split())
    assert "target (3 tokens, greedy)" in text and "target position 1" in text and "decoder layer 1 of 2" in text


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "reverse", "", "--decoder-text", "1 2"], "source is empty"),
        (["--model", "reverse", "1 2", "--decoder-text", "  "], "decoder text is empty"),
        (["--model", "reverse", " ".join("1" * 20), "--decoder-text", "1"], "pass truncate=True"),
        (["--model", "reverse", "1 2", "--decoder-text", " ".join("1" * 20)], "accepts at most 16"),
        (["--model", "reverse", "1 2"], "give the target with --decoder-text"),
        (["--model", "reverse", "1 2", "--decoder-text", "2 1", "--generate", "2"], "not both"),
        (["--model", "reverse", "1 2", "--decoder-text", "2 1", "--output", "cls"], "decoder position"),
        (["--model", "reverse", "1 2", "--decoder-text", "2 1", "--layer", "3"], "layer"),
        (["--model", "reverse", "1 2", "--decoder-text", "2 1", "--words"], "--words"),
        (["--model", "reverse", "1 2", "--decoder-text", "2 1", "--method", "flow", "--max-flow-seconds", "1e-9"],
         "--max-flow-seconds"),
        (["The cat.", "--decoder-text", "Le chat."], "minilm' is encoder-only"),
    ],
)
def test_cli_bad_input_is_one_line(capsys, args, message):
    status, out, err = run_cli(capsys, "explain", *args)
    assert status != 0
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err + out


def test_decoder_text_on_a_decoder_only_model(tiny_gpt2_path):
    with pytest.raises(AttnflowError, match="is decoder-only"):
        attnflow.explain("the cat", tiny_gpt2_path, decoder_text="sat")


def test_api_bad_input():
    with pytest.raises(AttnflowError, match="give the target with decoder_text"):
        attnflow.explain("1 2", "reverse")
    with pytest.raises(AttnflowError, match="do not run on encoder-decoder"):
        attnflow.explain("1 2", "reverse", "attention-gradient-nope", decoder_text="2 1")
    with pytest.raises(AttnflowError, match="graph"):
        attnflow.explain("1 2", "reverse", "rollout", decoder_text="2 1", graph="alti")
    e = attnflow.explain(" ".join("1" * 20), "reverse", "rollout", decoder_text="1", truncate=True)
    assert e.seq2seq["truncated"] and e.source_length == 16


@pytest.mark.e2e
@pytest.mark.slow
def test_the_table_in_docs_seq2seq_is_what_the_command_prints():
    import re
    from pathlib import Path

    from tests.printed import printouts_differ, run_attnflow

    doc = (Path(__file__).resolve().parents[2] / "docs" / "seq2seq.md").read_text()
    block = re.search(r"terminal 110 columns wide\):\n\n```\n(.*?)```", doc, re.S)
    assert block, "docs/seq2seq.md lost its example table"
    args = ["explain", "--model", "reverse", "7 2 9 4", "--decoder-text", "4 9 2 7", "--method", "raw", "--method",
            "rollout", "--method", "flow"]
    shown = run_attnflow(args, columns=110)
    assert printouts_differ(shown, block.group(1)) is None, printouts_differ(shown, block.group(1))


def test_the_model_is_left_as_it_was(seq2seq_paths):
    """sdpa is switched to eager for the capture and back; training mode and requires_grad flags are restored."""
    from attnflow.capture import load_model
    from attnflow.capture.seq2seq import capture_seq2seq, seq2seq_gradients, seq2seq_input_gradients

    loaded = load_model(seq2seq_paths["bart"])
    model = loaded.model
    assert model.config._attn_implementation == "sdpa"
    model.train()
    for p in list(model.parameters())[::2]:
        p.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    captured = capture_seq2seq(SOURCES["bart"], loaded, decoder_text=TARGETS["bart"])
    seq2seq_gradients(captured, loaded)
    seq2seq_input_gradients(captured, loaded)
    assert model.config._attn_implementation == "sdpa" and model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    # eager weights were captured: float32 rows, off 1 by the softmax's normalising sum and this one
    n = captured.cross.shape[-1]
    np.testing.assert_allclose(captured.cross.sum(-1), 1.0, rtol=0, atol=float32_sum_bound(n, depth=2))
