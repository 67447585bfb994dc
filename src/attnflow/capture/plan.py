"""What ``attnflow.explain`` must capture for the methods and options it is asked for.

Raw attention, rollout and flow read attention only through its head-fused
``(L, n, n)`` (:func:`attnflow.graph.fuse_heads`), and grad-rollout only through
``mean_h max(0, dS/dA ⊙ A)``, which :func:`attnflow.capture.gradients.weighted_attention`
reduces layer by layer. With the default mean fusion, capture fuses the heads while
the model runs (``capture_attention(..., heads="mean")``): float32 ``(L, 1, n, n)``
instead of float64 ``(L, H, n, n)``, and never more than one layer's heads alive at
a time. Everything else captures every head: ``head_fusion`` max or min (their
fused rows do not sum to 1, and the methods validate rows before fusing), head
weights (an ``(L, H)`` array, or ``"importance"``), a method not in
:data:`FUSED_METHODS`, or a caller that asks for the heads.

:func:`capture_planned` runs the model once on one text for everything an
explanation of it reads from an unperturbed forward pass: the attention (fused or
every head), the context-mixing graphs' tensors (value vectors, layer-norm inputs)
and the target's class and value (:meth:`attnflow.capture.targets.Target.bind_outputs`).
Passes that are a method itself stay its own: gradients' backward passes, blank-out,
faithfulness and occlusion perturbations, integrated-gradients steps, value zeroing's
reruns and the decoding steps of ``--generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .mixing import MixingCapture, capture_mixing
from .models import LoadedModel
from .targets import BoundTarget, Target
from .text import CapturedAttention, capture_attention, capture_attention_by, capture_with_outputs

#: Methods whose scores depend on the attention only through its head-fused (or, for grad-rollout,
#: gradient-weighted and fused) layers.
FUSED_METHODS: frozenset[str] = frozenset({"raw", "rollout", "flow", "grad-rollout"})


def heads_to_capture(methods: Sequence[str] | str, method_options: dict[str, Any] | None = None) -> str:
    """The ``heads=`` to capture with: ``"mean"`` when the head mean is all the methods read, else ``"all"``.

    Max and min fusion keep every head: their fused rows do not sum to 1, which the
    methods check on the attention they are given before fusing it.

    Examples
    --------
    >>> heads_to_capture(["raw", "rollout", "flow"])
    'mean'
    >>> heads_to_capture("rollout", {"head_fusion": "max"}), heads_to_capture("rollout", {"head_fusion": "importance"})
    ('all', 'all')
    >>> heads_to_capture(["rollout", "some-new-method"])
    'all'
    """
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names or any(name not in FUSED_METHODS for name in names):
        return "all"
    fusion = (method_options or {}).get("head_fusion", "mean")
    if fusion is None or (isinstance(fusion, str) and fusion.strip().lower() == "mean"):
        return "mean"
    return "all"


def fits(captured: Any, heads: str) -> bool:
    """Whether an existing capture holds what ``heads`` asks for: every head, or that same fusion.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> fits(SimpleNamespace(head_fusion=None), "mean"), fits(SimpleNamespace(head_fusion="mean"), "max")
    (True, False)
    """
    fusion = getattr(captured, "head_fusion", None)
    return fusion is None or fusion == heads


@dataclass
class PlannedCapture:
    """What one forward pass over a text recorded: its attention, the graphs' tensors, the bound target.

    ``mixing`` is ``None`` unless the plan asked for the context-mixing tensors, ``bound``
    unless it named a target. ``captured`` holds every head when ``mixing`` was recorded
    (the graphs read each head's weights).
    """

    captured: CapturedAttention
    mixing: MixingCapture | None = None
    bound: BoundTarget | None = None


def capture_planned(
    text: str, loaded: LoadedModel, *, heads: str = "all", mixing: bool = False, target: Target | None = None,
    label: Any = None, truncate: bool = False,
) -> PlannedCapture:
    """Run the model once on ``text`` and record what the plan asks for.

    Parameters
    ----------
    heads
        As :func:`attnflow.capture_attention` takes it (:func:`heads_to_capture` chooses it).
    mixing
        Also record what the context-mixing graphs need (:func:`attnflow.mixing.capture_mixing`).
    target, label
        A :class:`~attnflow.capture.targets.Target` (``resolve_target(spec, loaded)``) to bind
        from this pass's outputs, and the text's gold label for ``target="gold"``; equal to
        ``target.bind(loaded, captured.input_ids, label)``, without its pass.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> from attnflow.capture.targets import resolve_target
    >>> lm = load_model()
    >>> planned = capture_planned("One pass.", lm, mixing=True, target=resolve_target("norm", lm))
    >>> planned.captured.attentions.shape, planned.mixing.n_tokens, planned.bound.target.kind
    ((6, 12, 5, 5), 5, 'norm')
    >>> bool(abs(planned.bound.value - resolve_target("norm", lm).bind(lm, planned.captured.input_ids).value) < 1e-4)
    True
    """
    forward = target.forward_options() if target is not None else None
    outputs: list[Any] = []
    mixed: MixingCapture | None = None
    if mixing:
        def run(input_ids: list[int]) -> list[Any]:
            nonlocal mixed
            mixed = capture_mixing(loaded, input_ids, forward=forward, outputs=outputs)
            return [layer.weights for layer in mixed.layers]

        captured = capture_attention_by(text, loaded, run, truncate=truncate)
    elif target is not None:
        captured, output = capture_with_outputs(text, loaded, heads=heads, forward=forward, truncate=truncate)
        outputs.append(output)
    else:
        captured = capture_attention(text, loaded, heads=heads, truncate=truncate)
    bound = None
    if target is not None:
        import torch

        mask = torch.ones((1, len(captured.input_ids)), dtype=torch.long, device=getattr(loaded.model, "device", None))
        bound = target.bind_outputs(outputs[0], mask, label)
    return PlannedCapture(captured, mixed, bound)
