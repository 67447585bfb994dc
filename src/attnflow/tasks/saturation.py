"""Does flow over a context-mixing graph restate the first layer, as flow over raw attention can?

The raw flow from input token ``j`` to an output can never exceed ``min(1, sum_i M_1[i, j])``,
its first layer's column sum (docs/design.md §5). Where a token's top-layer flow reaches
that bound, flow says only how much the first layer mixes it in. :func:`flow_saturation`
counts, per graph, how many top-layer flow values sit at their bound
(:func:`attnflow.methods.flow.saturated_sources`), over a set of texts.

Run ``attnflow reproduce mixing-saturation --data docs/results/five-sentences.txt --out DIR``
for the committed numbers (``DIR/results.json`` is ``docs/results/mixing-saturation.json``):
the bundled MiniLM on the five sentences (outputs
``[CLS]`` and the mean, which ``attnflow evaluate`` explains for a cosine target) and the
bundled ``sva`` on its first 200 test sentences (output ``[CLS]``, what it classifies), every
graph defined for the model.

Examples
--------
>>> found = flow_saturation(["The cat sat on the mat."], graphs=["attention", "alti"])
>>> sorted(found["graphs"]), found["n_examples"]
(['alti', 'attention'], 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..capture import load_model
from ..errors import AttnflowError
from ..methods.flow import saturated_sources
from ..mixing import available_graphs, capture_text, get_graph
from . import sva

#: The attention graph's residual weight (the methods' default); the other graphs contain the residual.
ATTENTION_RESIDUAL = 0.5


def flow_saturation(
    texts: Sequence[str], model: Any = None, graphs: Sequence[str] | None = None, *, output: int | str = "cls",
    tolerance: float = 1e-9,
) -> dict[str, Any]:
    """Per graph, the share of top-layer flow values into ``output`` at their source bound.

    ``graphs=None`` takes every registered graph defined for the model (GlobEnc is left
    out for pre-LN blocks). Returns ``{"model", "output", "n_examples", "graphs": {graph:
    {"all_tokens": share, "words": share over the non-special tokens, "examples_all_words":
    share of texts whose every non-special token is at its bound}}}``.

    Examples
    --------
    >>> flow_saturation(["Dogs bark."], graphs=["norm"])["graphs"]["norm"]["all_tokens"] <= 1.0
    True
    """

    if isinstance(texts, str) or not texts:
        raise AttnflowError("The 'texts' parameter must be a non-empty list of texts.")
    loaded = load_model(model)
    names = list(graphs) if graphs is not None else None
    counts: dict[str, list[float]] = {}
    for text in texts:
        captured, capture = capture_text(text, loaded)  # one forward pass: the attention and every graph's input
        if names is None:
            names = [name for name in available_graphs() if capture.layout in get_graph(name).layouts]
        special = set(captured.special_positions)
        words = [i for i in range(len(captured.tokens)) if i not in special]
        for name in names:
            chosen = get_graph(name)
            matrices = chosen.matrices(capture)
            residual = ATTENTION_RESIDUAL if chosen.adds_residual else 0.0
            at_bound = saturated_sources(matrices, output, residual=residual, tolerance=tolerance)
            row = counts.setdefault(chosen.name, [0.0, 0.0, 0.0, 0.0, 0.0])
            row[0] += float(at_bound.sum())
            row[1] += float(at_bound.size)
            row[2] += float(at_bound[words].sum())
            row[3] += float(len(words))
            row[4] += float(bool(words) and bool(at_bound[words].all()))
    return {
        "model": loaded.name,
        "output": output,
        "n_examples": len(texts),
        "graphs": {
            name: {
                "all_tokens": row[0] / row[1],
                "words": row[2] / row[3] if row[3] else None,
                "examples_all_words": row[4] / len(texts),
            }
            for name, row in counts.items()
        },
    }


def committed_saturation(
    minilm_texts: Sequence[str], minilm_data: str, n_sva: int = 200, progress: Any = None
) -> dict[str, Any]:
    """What ``docs/results/mixing-saturation.json`` holds: MiniLM on ``minilm_texts`` and ``n_sva`` sva test sentences.

    ``progress(done, total)`` is called after each of the three runs.
    """

    sentences = [example.text for example in sva.generate(n_sva, split="test", seed=0)]
    runs: dict[str, Any] = {}
    done = 0

    def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal done
        found = flow_saturation(*args, **kwargs)
        done += 1
        if progress is not None:
            progress(done, 3)
        return found

    runs["minilm"] = {
        "data": minilm_data,
        "outputs": {output: run(minilm_texts, "minilm", output=output) for output in ("cls", "mean")},
    }
    runs["sva"] = {
        "data": f"the first {n_sva} sva test sentences (seed 0)",
        "outputs": {"cls": run(sentences, "sva", output="cls")},
    }
    return {
        "format": "attnflow.mixing-saturation",
        "version": 1,
        "command": "attnflow reproduce mixing-saturation --data docs/results/five-sentences.txt --out DIR",
        "models": runs,
    }
