"""Fixtures of the encoder-decoder tests: the tiny random T5, BART and Marian models, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.seq2seq_models import SEQ2SEQ_ARCHITECTURES, save_seq2seq_model


@pytest.fixture(scope="session")
def seq2seq_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Architecture name (t5, bart, marian) -> folder of its tiny random model and tokenizer."""
    root = tmp_path_factory.mktemp("seq2seq_models")
    return {arch: save_seq2seq_model(arch, root / arch) for arch in SEQ2SEQ_ARCHITECTURES}


@pytest.fixture(params=SEQ2SEQ_ARCHITECTURES)
def seq2seq_path(request: pytest.FixtureRequest, seq2seq_paths: dict[str, Path]) -> Path:
    return seq2seq_paths[request.param]
