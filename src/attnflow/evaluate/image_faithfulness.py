"""Image faithfulness: deletion and insertion curves by patch order, and their areas (AUC).

For each image, each method ranks the patches by its scores for the explained
output (``[CLS]``) at one layer (default: the top), highest first; ties keep the
earlier patch first. Blanking the patches in that order gives the deletion curve,
restoring them on a blank image the insertion curve (Petsiuk, Das & Saenko 2018,
"RISE"; the usual test for ViT explanations since Chefer et al. 2021). Each curve
is the probability of the class predicted on the unperturbed image, against the
fraction of patches blanked or restored, from 0 to 1; its area is taken with the
trapezoid rule. Deletion AUC: lower is better; insertion AUC: higher is better.

The baseline ``random`` orders the patches at random, drawn per image from
``numpy.random.default_rng([seed, image_index])``. Special tokens ([CLS], [DIST],
registers) are not patches and are never ranked.

Run it on the bundled digits model (what ``docs/vision.md`` reports)::

    attnflow evaluate --images digits --n 200 --out DIR

``graphs=["alti", ...]`` (CLI: ``--graph``) ranks the patches by each method over each
context-mixing graph of :mod:`attnflow.mixing` too, named ``GRAPH/METHOD``. ViT and DeiT
blocks are pre-LN: ``norm``, ``alti`` and ``value-zeroing`` are defined for them, built
from one hooked forward pass over the image's pixels; ``globenc`` is refused, naming why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capture import load_model
from ..capture.image import classify
from ..capture.image_perturb import perturbation_curves
from ..errors import AttnflowError
from ..explainers.image import explain_image
from ..explainers.text import check_graph_options, explain_attentions
from ..image_maps import patch_scores
from ..mixing import ATTENTION, capture_mixing, context_mixing, get_graph, graph_names, result_key

DEFAULT_METHODS: tuple[str, ...] = ("rollout", "flow", "grad-rollout")


def auc(fractions: Any, values: Any) -> float:
    """Area under a curve by the trapezoid rule.

    Examples
    --------
    >>> auc([0.0, 0.5, 1.0], [1.0, 0.5, 0.0])
    0.5
    """
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise AttnflowError(f"auc needs two 1-D arrays of the same length >= 2; got {x.shape} and {y.shape}.")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def patch_order(grid_scores: Any) -> np.ndarray:
    """Patch indices (row-major) from the highest score to the lowest; ties: the earlier patch first; NaN last.

    Examples
    --------
    >>> patch_order([[0.1, 0.9], [0.5, 0.9]]).tolist()
    [1, 3, 2, 0]
    """
    values = np.asarray(grid_scores, dtype=np.float64).reshape(-1)
    keys = np.where(np.isnan(values), np.inf, -values)
    return np.argsort(keys, kind="stable")


def random_order(n_patches: int, seed: int, index: int) -> np.ndarray:
    """The random baseline's order for image ``index``: ``default_rng([seed, index]).permutation(P)``."""
    return np.random.default_rng([int(seed), int(index)]).permutation(int(n_patches))


@dataclass
class ImageFaithfulness:
    """Deletion and insertion AUCs per image and method (``random`` included), and the mean curves.

    Attributes
    ----------
    deletion_auc, insertion_auc
        ``{method: ndarray (N,)}``.
    fractions
        ``(S,)`` the x axis of the curves (fraction of patches blanked / restored).
    deletion_curves, insertion_curves
        ``{method: ndarray (N, S)}``.
    """

    model: str
    methods: list[str]
    layer: int
    fill: str
    seed: int
    fractions: np.ndarray
    deletion_auc: dict[str, np.ndarray]
    insertion_auc: dict[str, np.ndarray]
    deletion_curves: dict[str, np.ndarray] = field(repr=False)
    insertion_curves: dict[str, np.ndarray] = field(repr=False)
    n_images: int = 0
    accuracy: float | None = None

    def summary(self) -> dict[str, dict[str, list[float]]]:
        """``{method: {"deletion_auc": [mean, sd], "insertion_auc": [mean, sd]}}`` (sd with ``ddof=1``)."""
        out = {}
        for name in self.deletion_auc:
            out[name] = {
                "deletion_auc": _mean_sd(self.deletion_auc[name]),
                "insertion_auc": _mean_sd(self.insertion_auc[name]),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, the summary and the mean curves."""
        return {
            "format": "attnflow.image_faithfulness",
            "version": 1,
            "model": self.model,
            "n_images": self.n_images,
            "accuracy": self.accuracy,
            "layer": self.layer,
            "fill": self.fill,
            "seed": self.seed,
            "summary": self.summary(),
            "fractions": self.fractions.tolist(),
            "mean_deletion_curve": {k: v.mean(axis=0).round(6).tolist() for k, v in self.deletion_curves.items()},
            "mean_insertion_curve": {k: v.mean(axis=0).round(6).tolist() for k, v in self.insertion_curves.items()},
        }

    def table(self) -> str:
        """A Markdown table: method, deletion AUC (↓), insertion AUC (↑), mean ± sd."""
        lines = ["| method | deletion AUC ↓ | insertion AUC ↑ |", "|---|---|---|"]
        for name, values in self.summary().items():
            d, i = values["deletion_auc"], values["insertion_auc"]
            lines.append(f"| {name} | {d[0]:.3f} ± {d[1]:.3f} | {i[0]:.3f} ± {i[1]:.3f} |")
        return "\n".join(lines)


def _mean_sd(values: np.ndarray) -> list[float]:
    values = np.asarray(values, dtype=np.float64)
    sd = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return [round(float(values.mean()), 6), round(sd, 6)]


def image_faithfulness(
    images: Sequence[Any],
    model: Any = "digits-vit",
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    layer: int = -1,
    output: Any = "cls",
    fill: str = "black",
    seed: int = 0,
    max_steps: int = 64,
    labels: Sequence[int] | None = None,
    progress: Any = None,
    graphs: Sequence[str] | str | None = None,
    **method_options: Any,
) -> ImageFaithfulness:
    """Deletion and insertion AUCs of each method, and of a random order, over ``images``.

    Parameters
    ----------
    images
        Image files, PIL images or arrays (anything :func:`attnflow.explain_image` takes).
    model
        An image classifier (default: the bundled ``digits-vit``).
    methods
        Registered methods; ``grad-rollout`` explains the predicted class.
    layer
        The layer whose scores rank the patches (1-based; -1 is the top).
    fill
        ``"black"`` or ``"mean"``: what a blanked patch becomes.
    labels
        The images' true classes, to report the model's accuracy on them (optional).
    graphs
        The token-to-token graph(s) the methods run over (default ``"attention"``);
        results over a context-mixing graph are named ``GRAPH/METHOD`` (``alti/flow``).
        ``residual`` and gradient methods are for the attention graph only, and a graph
        not defined for the model (``globenc`` on ViT) is an error before any image runs.

    Examples
    --------
    >>> from attnflow.tasks.digits import digits_test_set
    >>> images, _ = digits_test_set(2)
    >>> result = image_faithfulness(images, methods=("rollout",))
    >>> sorted(result.summary()), result.fractions.shape
    (['random', 'rollout'], (17,))
    >>> sorted(image_faithfulness(images, methods=("rollout",), graphs=["attention", "alti"]).summary())
    ['alti/rollout', 'random', 'rollout']
    """

    names = list(dict.fromkeys(methods))
    if "random" in names:
        raise AttnflowError("'random' is the baseline and always included; do not list it among the methods.")
    graph_list = graph_names(graphs)
    others = context_mixing(graph_list)
    check_graph_options(others, names, method_options)
    loaded = load_model(model)
    for name in others:  # before any image: globenc on a pre-LN ViT is refused here, naming why
        get_graph(name).check_model(loaded)
    keys = [result_key(graph, name) for graph in graph_list for name in names]
    kept = {key: value for key, value in method_options.items() if key not in ("residual", "head_fusion")}
    deletion: dict[str, list[np.ndarray]] = {name: [] for name in [*keys, "random"]}
    insertion: dict[str, list[np.ndarray]] = {name: [] for name in [*keys, "random"]}
    correct = []
    fractions = np.zeros(0)
    items = list(images)
    if not items:
        raise AttnflowError("The 'images' parameter is empty; give at least one image.")
    for index, image in enumerate(items):
        explanation = explain_image(image, loaded, methods=names, output=output, target="predicted", **method_options)
        captured = explanation.captured

        probabilities = classify(loaded, captured.pixel_values)[0]
        predicted = int(probabilities.argmax())
        if labels is not None:
            correct.append(predicted == int(labels[index]))
        rows, cols = captured.grid
        orders: dict[str, np.ndarray] = {}
        if ATTENTION in graph_list:
            orders.update({name: patch_order(explanation.grid_scores(name, layer)) for name in names})
        if others:  # one hooked forward pass over the pixels serves every analytic graph
            mixing = capture_mixing(loaded, inputs={"pixel_values": captured.pixel_values})
            for graph in others:
                part = explain_attentions(get_graph(graph).matrices(mixing), captured.tokens, methods=names,
                                          output=output, residual=0.0, **kept)
                for name in names:
                    grid = patch_scores(part.layer_scores(name, layer), captured.patch_positions, captured.grid)
                    orders[result_key(graph, name)] = patch_order(grid)
        orders["random"] = random_order(rows * cols, seed, index)
        for name, order in orders.items():
            fractions, down, up = perturbation_curves(
                loaded, captured.pixel_values, captured.grid, order, predicted, fill=fill, max_steps=max_steps
            )
            deletion[name].append(down)
            insertion[name].append(up)
        if progress is not None:
            progress(index + 1, len(items))
    n_layers = explanation.n_layers
    chosen_layer = layer if layer > 0 else n_layers + layer + 1
    return ImageFaithfulness(
        model=loaded.name,
        methods=keys,
        layer=int(chosen_layer),
        fill=fill,
        seed=int(seed),
        fractions=np.asarray(fractions),
        deletion_auc={k: np.array([auc(fractions, c) for c in v]) for k, v in deletion.items()},
        insertion_auc={k: np.array([auc(fractions, c) for c in v]) for k, v in insertion.items()},
        deletion_curves={k: np.stack(v) for k, v in deletion.items()},
        insertion_curves={k: np.stack(v) for k, v in insertion.items()},
        n_images=len(items),
        accuracy=float(np.mean(correct)) if correct else None,
    )
