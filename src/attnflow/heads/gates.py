"""Pruning heads with stochastic gates and a relaxed L0 penalty (Voita et al. 2019, after Louizos et al. 2018).

Every head's output is multiplied by a gate ``g`` drawn from a Hard Concrete
distribution with a learned location ``log_alpha`` (temperature ``beta = 2/3``,
stretched to ``(gamma, zeta) = (-0.1, 1.1)`` and clipped to ``[0, 1]``, so a gate is
exactly 0 or 1 with non-zero probability). The gates are trained on

    L = cross-entropy + lambda * sum over heads of P(g != 0)

By default the model itself stays **frozen**: only the ``L x H`` gate parameters learn
(cheaper, and it asks the narrow question of which of *this* model's heads it can do
without). With ``fine_tune=True`` the model's parameters are trained together with the
gates, as Voita et al. do (their own Adam step size, ``model_learning_rate``; dropout
stays off, so a run is deterministic for a seed); every penalty starts from the
original weights, and the original weights are put back at the end, also on an error.
At the end a head is kept when its deterministic gate
``clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)`` exceeds 0.5, and the pruned
model (kept heads 1, the others 0) is measured on held-out examples. Sweeping
``lambda`` takes the number of heads kept from all to a few.

The cross-entropy is against each example's gold label when every training example
has one, else against the unpruned model's own prediction. Only models whose output is
one class distribution per input (sequence classifiers) can be gated here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capture import load_model
from ..capture.gradients import attention_output_projections, count_heads, head_mask
from ..capture.perturb import _device
from ..capture.targets import resolve_target
from ..data import as_examples
from ..errors import AttnflowError
from .analysis import HeadReport
from .plots import plot_pruning_curves

#: Hard Concrete temperature and stretch (Louizos et al. 2018).
BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
DEFAULT_PENALTIES: tuple[float, ...] = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3)


def l0_probability(log_alpha: Any) -> Any:
    """``P(g != 0)`` for Hard Concrete gates with locations ``log_alpha`` (torch tensor in, tensor out).

    Examples
    --------
    >>> import torch
    >>> [round(float(p), 3) for p in l0_probability(torch.tensor([-10.0, 0.0, 10.0]))]
    [0.0, 0.832, 1.0]
    """
    import torch

    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def sample_gates(log_alpha: Any, generator: Any = None) -> Any:
    """One draw of Hard Concrete gates in ``[0, 1]`` (differentiable in ``log_alpha``).

    Examples
    --------
    >>> import torch
    >>> g = sample_gates(torch.tensor([-20.0, 20.0]), torch.Generator().manual_seed(0))
    >>> g.tolist()
    [0.0, 1.0]
    """
    import torch

    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: Any) -> np.ndarray:
    """The test-time gates ``clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)`` as numpy.

    Examples
    --------
    >>> import torch
    >>> deterministic_gates(torch.tensor([[-5.0, 0.0, 5.0]])).round(3).tolist()
    [[0.0, 0.5, 1.0]]
    """
    import torch

    with torch.no_grad():
        value = (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
    return value.detach().cpu().numpy().astype(np.float64)


@dataclass
class GateSweep:
    """The outcome of :func:`gate_pruning`: one row per penalty ``lambda``, plus the ranking comparison.

    Each row: ``penalty``, ``n_kept``, ``kept`` (``[layer][head]`` booleans), ``gates``
    (the deterministic gates), ``accuracy`` of the gated model on the evaluation set,
    ``ranking_accuracy`` (the same number of heads kept by importance ranking: the most
    important ones, in the original model), ``final_loss`` (the last step's
    cross-entropy) and, when a :class:`HeadReport` was given, ``kept_roles``
    (``"L1H3: agreement"``, ...). With ``fine_tune`` also ``all_heads_accuracy``: the
    fine-tuned model's accuracy with every head kept.
    """

    model_name: str
    n_layers: int
    n_heads: int
    labels: str
    n_train: int
    n_eval: int
    settings: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    unpruned_accuracy: float | None = None
    fine_tune: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "attnflow.head_gates",
            "version": 1,
            "model": self.model_name,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "labels": self.labels,
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "settings": self.settings,
            "fine_tune": self.fine_tune,
            "unpruned_accuracy": self.unpruned_accuracy,
            "rows": self.rows,
        }

    def to_markdown(self) -> str:
        """A table: penalty, heads kept, accuracy with the gates, accuracy keeping as many heads by importance."""
        lines = [
            "| lambda | heads kept | accuracy, gates | accuracy, importance ranking | roles of the kept heads |",
            "|---:|---:|---:|---:|---|",
        ]
        for row in self.rows:
            ranking = "–" if row.get("ranking_accuracy") is None else f"{row['ranking_accuracy']:.3f}"
            kept_roles = ", ".join(row.get("kept_roles", [])) if len(row.get("kept_roles", [])) <= 8 else (
                ", ".join(row["kept_roles"][:8]) + f", … (+{len(row['kept_roles']) - 8})"
            )
            lines.append(
                f"| {row['penalty']:g} | {row['n_kept']} / {self.n_layers * self.n_heads} | {row['accuracy']:.3f} | "
                f"{ranking} | {kept_roles or '–'} |"
            )
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Accuracy against heads kept: the gates and the importance ranking (needs matplotlib)."""

        return plot_pruning_curves(self, ax=ax)


def _classifier_batches(loaded: Any, texts: list[str], batch_size: int) -> list[tuple[Any, Any, list[int]]]:

    tokenizer = loaded.tokenizer
    if tokenizer.pad_token is None:
        raise AttnflowError(f"The tokenizer of {loaded.name!r} has no padding token; gates need batches.")
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = list(range(start, min(start + batch_size, len(texts))))
        batch = tokenizer([texts[i] for i in chunk], padding=True, truncation=True, return_tensors="pt")
        device = _device(loaded.model)
        out.append((batch["input_ids"].to(device), batch["attention_mask"].to(device), chunk))
    return out


def gate_pruning(
    train_examples: Any,
    eval_examples: Any,
    model: Any = None,
    *,
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    steps: int = 150,
    learning_rate: float = 0.1,
    batch_size: int = 32,
    init: float = 3.0,
    seed: int = 0,
    importance: Any = None,
    report: Any = None,
    fine_tune: bool = False,
    model_learning_rate: float = 1e-4,
    tokenizer: Any = None,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> GateSweep:
    """Train one stochastic gate per head for each penalty and measure the pruned model (module docstring).

    Parameters
    ----------
    train_examples, eval_examples
        Examples as :func:`attnflow.evaluate` takes them; the gates learn on the first,
        the pruned models are measured on the second.
    model
        A sequence-classification model (anything :func:`attnflow.capture.load_model` accepts).
    penalties
        The values of ``lambda`` to sweep (each trained from the same start).
    steps, learning_rate, batch_size, init, seed
        Adam steps on ``log_alpha`` (initialised to ``init``: gates open), its step size,
        the minibatch size, and the seed of the minibatches and the gate noise.
    importance
        ``(L, H)`` head importance (or a :class:`HeadReport`) for the ranking comparison:
        at each point the same number of heads is kept, the most important ones.
    report
        A :class:`HeadReport` whose roles are listed for the heads each point keeps
        (defaults to ``importance`` when that is a report).
    fine_tune, model_learning_rate
        Train the model's parameters together with the gates (Adam, this step size),
        as Voita et al. do; default frozen. The model is handed back with its
        original weights.

    Returns
    -------
    GateSweep

    Examples
    --------
    >>> from attnflow.tasks import sva
    >>> data = [(e.text, e.label) for e in sva.generate(8, split="train", seed=1)]
    >>> sweep = gate_pruning(data, data, "sva", penalties=(0.0,), steps=2, batch_size=4, fine_tune=True)
    >>> sweep.fine_tune, sweep.rows[0]["n_kept"], sweep.rows[0]["accuracy"]
    (True, 48, 1.0)
    """
    import torch


    train, held_out = as_examples(train_examples), as_examples(eval_examples)
    if not train or not held_out:
        raise AttnflowError("Gate pruning needs training and evaluation examples; one of the sets is empty.")
    checked = []
    for value in penalties:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
            raise AttnflowError(f"The 'penalties' parameter must hold numbers >= 0; got {value!r}.")
        checked.append(float(value))
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AttnflowError(f"The '{name}' parameter must be a positive integer; got {value!r} instead.")
    for name, value in (("learning_rate", learning_rate), ("model_learning_rate", model_learning_rate)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise AttnflowError(f"The '{name}' parameter must be a number > 0; got {value!r} instead.")
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    try:
        n_layers = len(attention_output_projections(loaded.model))
        n_heads = count_heads(loaded.model)
    except AttnflowError as exc:
        raise AttnflowError(f"The model {loaded.name!r} has no attention heads to gate: {exc}") from None
    if loaded.is_decoder or loaded.is_vision:
        raise AttnflowError(
            f"Gate pruning needs a text sequence classifier; {loaded.name!r} is a "
            f"{'decoder' if loaded.is_decoder else 'vision model'}."
        )
    net = loaded.model
    was_training = net.training
    net.eval()
    frozen = [(p, p.requires_grad) for p in net.parameters()]
    for parameter, _ in frozen:
        parameter.requires_grad_(False)
    # fine-tuning changes the weights in place: keep the originals to start every penalty from and to hand back
    original = {key: value.detach().clone() for key, value in net.state_dict().items()} if fine_tune else None
    tuned = [p for p in net.parameters() if p.is_floating_point()] if fine_tune else []
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)

    def logits_of(input_ids: Any, attention_mask: Any) -> Any:
        out = net(input_ids=input_ids, attention_mask=attention_mask)
        logits = getattr(out, "logits", None)
        if logits is None or logits.ndim != 2:
            raise AttnflowError(
                f"Gate pruning needs a sequence classifier (one class distribution per input); {loaded.name!r} "
                "returns none."
            )
        return logits

    try:
        train_batches = _classifier_batches(loaded, [e.text for e in train], batch_size)
        eval_batches = _classifier_batches(loaded, [e.text for e in held_out], batch_size)

        def predict(mask: Any, batches: list) -> np.ndarray:
            predictions = np.empty(sum(len(b[2]) for b in batches), dtype=np.int64)
            with torch.no_grad(), head_mask(net, mask):
                for ids, attention, chunk in batches:
                    predictions[chunk] = logits_of(ids, attention).argmax(-1).cpu().numpy()
            return predictions

        ones = np.ones((n_layers, n_heads))
        label_map = _label_indices(loaded, train)
        if label_map is not None:
            targets, labels = label_map, "gold labels"
        else:
            targets, labels = predict(ones, train_batches), "the unpruned model's predictions"
        eval_labels = _label_indices(loaded, held_out)
        if eval_labels is None:
            eval_labels = predict(ones, eval_batches)
        target_tensor = torch.as_tensor(targets, dtype=torch.long)

        def accuracy(mask: Any) -> float:
            return float((predict(mask, eval_batches) == eval_labels).mean())

        weights = None
        if importance is not None:
            weights = np.asarray(importance.importance if isinstance(importance, HeadReport) else importance, float)
            if weights.shape != (n_layers, n_heads):
                raise AttnflowError(
                    f"The 'importance' parameter must have shape ({n_layers}, {n_heads}); got {weights.shape}."
                )
        if report is None and isinstance(importance, HeadReport):
            report = importance
        role_names = report.roles if report is not None else None

        sweep = GateSweep(
            model_name=loaded.name, n_layers=n_layers, n_heads=n_heads, labels=labels, n_train=len(train),
            n_eval=len(held_out), unpruned_accuracy=accuracy(ones),
            fine_tune=bool(fine_tune),
            settings={
                "model": (
                    f"fine-tuned with the gates (Adam, learning rate {model_learning_rate:g}; dropout off), as "
                    "Voita et al.; every penalty starts from the original weights"
                    if fine_tune else "frozen (only the gates learn; Voita et al. fine-tune the model with them)"
                ),
                "model_learning_rate": model_learning_rate if fine_tune else None,
                "steps": steps, "learning_rate": learning_rate, "batch_size": batch_size, "init_log_alpha": init,
                "seed": seed, "hard_concrete": {"beta": BETA, "gamma": GAMMA, "zeta": ZETA},
                "kept": "deterministic gate > 0.5",
                "loss": "mean cross-entropy + lambda * sum of P(gate != 0)",
            },
        )
        n_rows = len(checked)
        for index, penalty in enumerate(checked):
            generator = torch.Generator().manual_seed(seed)
            log_alpha = torch.full((n_layers, n_heads), float(init), dtype=torch.float64, requires_grad=True)
            groups: list[dict[str, Any]] = [{"params": [log_alpha], "lr": learning_rate}]
            if fine_tune:
                net.load_state_dict(original)
                for parameter in tuned:
                    parameter.requires_grad_(True)
                groups.append({"params": tuned, "lr": model_learning_rate})
            optimizer = torch.optim.Adam(groups)
            loss_value = float("nan")
            for _ in range(steps):
                ids, attention, chunk = train_batches[int(torch.randint(len(train_batches), (1,), generator=generator))]
                gates = sample_gates(log_alpha, generator)
                with head_mask(net, gates.to(dtype)):
                    logits = logits_of(ids, attention)
                loss = torch.nn.functional.cross_entropy(logits.double(), target_tensor[chunk].to(logits.device))
                total = loss + penalty * l0_probability(log_alpha).sum()
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
                loss_value = float(loss.detach())
            for parameter in tuned:
                parameter.requires_grad_(False)
            gates_now = deterministic_gates(log_alpha)
            kept = gates_now > 0.5
            row: dict[str, Any] = {
                "penalty": penalty,
                "n_kept": int(kept.sum()),
                "accuracy": accuracy(kept.astype(np.float64)),
                "ranking_accuracy": None,
                "final_loss": loss_value,
                "kept": kept.tolist(),
                "gates": np.round(gates_now, 4).tolist(),
            }
            if fine_tune:
                row["all_heads_accuracy"] = accuracy(ones)
                net.load_state_dict(original)  # the ranking comparison is on the original model
            if weights is not None:
                order = np.argsort(-np.nan_to_num(weights, nan=0.0).ravel(), kind="stable")
                mask = np.zeros(n_layers * n_heads)
                mask[order[: row["n_kept"]]] = 1.0
                row["ranking_accuracy"] = accuracy(mask.reshape(n_layers, n_heads))
            if role_names is not None:
                row["kept_roles"] = [
                    f"L{layer + 1}H{head + 1}: {role_names[layer, head] or '–'}"
                    for layer, head in zip(*np.nonzero(kept), strict=True)
                ]
            sweep.rows.append(row)
            if progress is not None:
                progress(index + 1, n_rows)
    finally:
        if original is not None:
            net.load_state_dict(original)
        for parameter, flag in frozen:
            parameter.requires_grad_(flag)
        net.train(was_training)
    return sweep


def _label_indices(loaded: Any, items: list[Any]) -> np.ndarray | None:
    """Class indices of the items' gold labels, or None when some item has none."""
    if not all(item.label is not None for item in items):
        return None

    resolved = resolve_target("gold", loaded)
    return np.array([resolved.resolve_label(item.label) for item in items], dtype=np.int64)
