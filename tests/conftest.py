"""Shared fixtures: tiny random-weight models of every supported architecture, and the bundled MiniLM.

Tiny models are built once per session into a temporary folder (about a second in
all). Fixtures that hand out *loaded* models are function-scoped, so a test may
change the model (train mode, monkeypatched forward) without affecting others;
``minilm`` is session-scoped and must not be modified.
"""

from __future__ import annotations

import os

# No test may reach the network; set before transformers / huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.tiny_models import ARCHITECTURES, DECODERS, ENCODERS, save_tiny_model  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep a module's tests on one xdist worker when they share a module- or class-scoped fixture.

    ``--dist loadgroup`` hands ungrouped tests out one by one, so each of two workers would build
    such a fixture for itself (the reproduction fixture of ``tests/tasks/test_reproduce.py`` is
    minutes of work); an ``xdist_group`` named after the module builds it once. Tests that already
    name a group keep it. This runs before xdist reads the groups (``tryfirst``).
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is not None or getattr(item, "module", None) is None:
            continue
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(defs and defs[-1].scope in ("module", "class") for defs in definitions.values()):
            item.add_marker(pytest.mark.xdist_group(f"module:{item.module.__name__}"))
    # Groups first: xdist hands work out in collection order, and a group is one worker's from start to end,
    # so the long ones (the reproduction fixture, the real Ray heads) start while the other worker takes the rest
    # instead of running alone at the end. A stable sort keeps each module's own order.
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


@pytest.fixture(scope="session")
def tiny_model_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Architecture name -> folder of its tiny model (config, safetensors, tokenizer)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: save_tiny_model(arch, root / arch) for arch in ARCHITECTURES}


def _path_fixture(arch: str):
    @pytest.fixture(scope="session", name=f"tiny_{arch}_path")
    def fixture(tiny_model_paths: dict[str, Path]) -> Path:
        return tiny_model_paths[arch]

    fixture.__doc__ = f"Folder of the tiny {arch} model."
    return fixture


tiny_bert_path = _path_fixture("bert")
tiny_roberta_path = _path_fixture("roberta")
tiny_distilbert_path = _path_fixture("distilbert")
tiny_gpt2_path = _path_fixture("gpt2")
tiny_llama_path = _path_fixture("llama")


@pytest.fixture(params=ARCHITECTURES)
def tiny_arch(request: pytest.FixtureRequest) -> str:
    """Each tiny architecture in turn (bert, roberta, distilbert, gpt2, llama)."""
    return request.param


@pytest.fixture(params=ENCODERS)
def tiny_encoder_arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=DECODERS)
def tiny_decoder_arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny_model_path(tiny_arch: str, tiny_model_paths: dict[str, Path]) -> Path:
    """Folder of the tiny model of ``tiny_arch`` (parametrized over all architectures)."""
    return tiny_model_paths[tiny_arch]


@pytest.fixture
def tiny_loaded(tiny_model_path: Path):
    """A freshly loaded :class:`attnflow.capture.LoadedModel` (sdpa attention, eval mode)."""
    from attnflow.capture import load_model

    return load_model(tiny_model_path)


@pytest.fixture(scope="session")
def minilm():
    """The bundled MiniLM-L6 as a LoadedModel, loaded once. Do not modify it."""
    from attnflow.capture import load_model

    return load_model()


def _run_shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this test run that all pytest-xdist workers share (the run's own base folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def _run_local_attnflow_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point ``ATTNFLOW_CACHE`` at a folder of this run, so that a developer's converted SmolLM2 can't hide a
    broken conversion; the workers of one run share it (the conversion's own lock serialises them)."""
    from attnflow.smollm2 import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(_run_shared_dir(tmp_path_factory) / "attnflow-cache")
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session")
def smollm2_path(_run_local_attnflow_cache) -> Path:
    """The folder of the bundled SmolLM2, converted from GGUF at most once per test run (all workers)."""
    from attnflow.smollm2 import ensure_converted

    return ensure_converted()


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path):
    """The bundled SmolLM2-135M-Instruct as a LoadedModel, loaded once per worker. Do not modify it."""
    from attnflow.capture import load_model

    return load_model("smollm2")


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command loads a model: what is checked here must be checked before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    import attnflow.capture
    import attnflow.capture.models

    monkeypatch.setattr(attnflow.capture, "load_model", refuse)
    monkeypatch.setattr(attnflow.capture.models, "load_model", refuse)
