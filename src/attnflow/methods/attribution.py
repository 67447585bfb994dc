"""Attribution baselines as methods: the second kind of registry entry, beside the attention methods.

An attention method (:mod:`attnflow.methods.registry`) maps captured attention
``(L, H, n, n)`` to scores ``(L, n)`` and never sees the model. An *attribution*
method needs the model and a target and has no layers: it takes the model pass
(the loaded model, the target bound to this input, the token ids) and returns
``(n,)``, one score per input token, reported at layer ``input``. attnflow chooses
only the point (the first layer's input, :mod:`attnflow.capture.gradient_point`)
and the target; Captum does the attribution, on the model as a function of the
point's value ``h`` ``(n, d)``:

======================== ============================================== ===============================
name                     Captum                                         per-token score
======================== ============================================== ===============================
``saliency``             ``Saliency`` (Simonyan et al. 2014)            ``||g_j||_2``
``grad-x-input``         ``InputXGradient``                             ``|sum_d h_jd g_jd|``
``integrated-gradients`` ``IntegratedGradients``, from the blanked h    ``|sum_d IG_jd|``
``occlusion``            ``Occlusion``, one token at a time, h_j -> 0   ``|S(h) - S(h, h_j = 0)|``
``gradient-shap``        ``GradientShap``, baselines: blanked h and 0   ``|sum_d attribution_jd|``
``lime``                 ``Lime``, tokens as features, absent -> 0      ``|coefficient_j|``
``random``               (none) ``default_rng([seed, index])``          uniform in [0, 1)
======================== ============================================== ===============================

DeepLIFT is left out: its rescale rules are defined for elementwise
nonlinearities, and a transformer's softmax attention multiplies two functions of
the input, for which Captum's ``DeepLift`` falls back to plain gradients.

Each method names the yardstick it computes (:attr:`AttributionMethod.yardstick`);
evaluation never correlates a method with its own yardstick. Occlusion differs
from blank-out in its baseline: it zeroes the token's vector at the first layer's
input (position embedding included), where blank-out replaces the token by
``[UNK]`` and lets the model embed it.

Examples
--------
>>> available_attributions()
('saliency', 'grad-x-input', 'integrated-gradients', 'occlusion', 'gradient-shap', 'lime', 'random')
>>> is_attribution("occlusion"), is_attribution("rollout")
(True, False)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capture._eager import eager_attention
from ..capture.gradient_point import gradient_point, record_point, set_point
from ..errors import AttnflowError

#: The layer label attribution scores are reported at.
INPUT_LAYER = "input"
#: Default and documented limit of model passes for one example's occlusion or LIME.
MAX_PASSES = 1000
#: Default LIME samples per example.
LIME_SAMPLES = 200


@dataclass
class AttributionInputs:
    """What an attribution method gets: the model pass of one example, and the options."""

    loaded: Any
    bound: Any
    input_ids: list[int]
    blank_id: int
    ig_steps: int = 50
    lime_samples: int = LIME_SAMPLES
    seed: int = 0
    index: int = 0
    point: Any = None
    max_passes: int = MAX_PASSES
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttributionMethod:
    """A registered attribution method: ``compute(inputs) -> (n,)``."""

    name: str
    summary: str
    reference: str
    compute: Callable[[AttributionInputs], np.ndarray]
    yardstick: str | None = None
    passes: Callable[[int, AttributionInputs | dict[str, Any]], int] | None = None


_REGISTRY: dict[str, AttributionMethod] = {}


def register_attribution(method: AttributionMethod) -> AttributionMethod:
    """Add ``method`` to the attribution registry (names are unique)."""
    if method.name in _REGISTRY:
        raise RuntimeError(f"attribution method {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    return method


def available_attributions() -> tuple[str, ...]:
    """Names of every attribution method, in the order tables show them."""
    return tuple(_REGISTRY)


def is_attribution(name: Any) -> bool:
    """Whether ``name`` is an attribution method (rather than an attention method)."""
    return isinstance(name, str) and name in _REGISTRY


def get_attribution(name: str) -> AttributionMethod:
    """Look an attribution method up by name."""
    if not is_attribution(name):
        raise AttnflowError(f"Unknown attribution method {name!r}; available: {', '.join(available_attributions())}.")
    return _REGISTRY[name]


def split_methods(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(attention methods, attribution methods)`` of ``names``, each in the given order.

    Examples
    --------
    >>> split_methods(["flow", "occlusion", "rollout", "saliency"])
    (['flow', 'rollout'], ['occlusion', 'saliency'])
    """
    names = list(names)
    return [n for n in names if not is_attribution(n)], [n for n in names if is_attribution(n)]


def check_attribution_options(
    names: Sequence[str], *, ig_steps: Any = 50, lime_samples: Any = LIME_SAMPLES, max_passes: Any = MAX_PASSES
) -> None:
    """Refuse bad options of the chosen attribution methods in one line, before any model loads.

    Examples
    --------
    >>> check_attribution_options(["integrated-gradients"], ig_steps=0)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: integrated-gradients needs --ig-steps of at least 1; got 0.
    >>> check_attribution_options(["lime"], lime_samples=5000)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: lime would run 5000 model passes per example, over the limit of 1000 \
(--max-passes); lower --lime-samples or raise --max-passes.
    """
    for option, value in (("--ig-steps", ig_steps), ("--lime-samples", lime_samples), ("--max-passes", max_passes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise AttnflowError(f"{option} must be a whole number; got {value!r}.")
    stepped = [name for name in ("integrated-gradients", "gradient-shap") if name in names]  # steps or samples
    if stepped and ig_steps < 1:
        raise AttnflowError(f"{stepped[0]} needs --ig-steps of at least 1; got {ig_steps}.")
    if max_passes < 1:
        raise AttnflowError(f"--max-passes must be at least 1; got {max_passes}.")
    if "lime" in names:
        if lime_samples < 2:
            raise AttnflowError(f"lime needs --lime-samples of at least 2; got {lime_samples}.")
        if lime_samples > max_passes:
            raise AttnflowError(
                f"lime would run {lime_samples} model passes per example, over the limit of {max_passes} "
                "(--max-passes); lower --lime-samples or raise --max-passes."
            )


def check_attribution_model(names: Sequence[str], loaded: Any) -> None:
    """Refuse attribution methods on a model they do not handle (an image model), in one line."""
    if not names:
        return
    if getattr(loaded, "is_vision", False):
        raise AttnflowError(
            f"{names[0]} is a text attribution method (tokens at the first layer's input); for an image model use "
            "raw, rollout or flow, or attnflow evaluate --images for patch blank-out."
        )


def check_passes(names: Sequence[str], n_tokens: int, max_passes: int) -> None:
    """Refuse occlusion on a text needing more model passes than ``max_passes``, before any attribution runs."""
    if "occlusion" in names and n_tokens + 1 > max_passes:
        raise AttnflowError(
            f"occlusion would run {n_tokens + 1} model passes on this text of {n_tokens} tokens, over the limit of "
            f"{max_passes} (--max-passes); raise --max-passes or shorten the text."
        )


def attribution_scores(name: str, inputs: AttributionInputs) -> np.ndarray:
    """One attribution method's scores ``(n,)`` for one example, computed inside eager attention."""

    method = get_attribution(name)
    if inputs.point is None and name != "random":
        inputs.point = gradient_point(inputs.loaded)
    with eager_attention(inputs.loaded.model):
        values = np.asarray(method.compute(inputs), dtype=np.float64).reshape(-1)
    if values.shape != (len(inputs.input_ids),):  # pragma: no cover - every method returns one per token
        raise AttnflowError(f"{name} returned {values.shape[0]} scores for {len(inputs.input_ids)} tokens.")
    return values


def _model_function(inputs: AttributionInputs) -> tuple[Any, Any, Any]:
    """``(forward, h, h_blank)``: the target score as a function of the point's value ``(B, n, d)``."""
    import torch


    model = inputs.loaded.model
    ids = torch.tensor([inputs.input_ids], dtype=torch.long, device=getattr(model, "device", None))
    content = _content(inputs)
    blanked = ids.clone()
    blanked[0, content] = int(inputs.blank_id)
    both = torch.cat([ids, blanked])
    with torch.no_grad():
        value = record_point(inputs.point, lambda: inputs.bound.forward(
            model, input_ids=both, attention_mask=torch.ones_like(both), kind="score"))
    h, h_blank = value[:1], value[1:]

    def forward(values: torch.Tensor) -> torch.Tensor:
        batch = ids.expand(values.shape[0], -1)
        with set_point(inputs.point, values):
            return inputs.bound.forward(model, input_ids=batch, attention_mask=torch.ones_like(batch), kind="score")

    return forward, h, h_blank


def _content(inputs: AttributionInputs) -> list[int]:
    tokenizer = inputs.loaded.tokenizer
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return [i for i, token in enumerate(inputs.input_ids) if token not in special] or list(range(len(inputs.input_ids)))


def _per_token(attribution: Any, how: str = "sum") -> np.ndarray:
    values = attribution[0].detach().cpu().double().numpy()
    if how == "norm":
        return np.linalg.norm(values, axis=-1)
    return np.abs(values.sum(axis=-1))


def _saliency(inputs: AttributionInputs) -> np.ndarray:
    import torch
    from captum.attr import Saliency

    forward, h, _ = _model_function(inputs)
    with torch.enable_grad():
        return _per_token(Saliency(forward).attribute(h.requires_grad_(True), abs=False), "norm")


def _grad_x_input(inputs: AttributionInputs) -> np.ndarray:
    import torch
    from captum.attr import InputXGradient

    forward, h, _ = _model_function(inputs)
    with torch.enable_grad():
        return _per_token(InputXGradient(forward).attribute(h.requires_grad_(True)))


def _integrated_gradients(inputs: AttributionInputs) -> np.ndarray:
    import torch
    from captum.attr import IntegratedGradients

    forward, h, h_blank = _model_function(inputs)
    with torch.enable_grad():
        found = IntegratedGradients(forward).attribute(h, baselines=h_blank, n_steps=inputs.ig_steps,
                                                       internal_batch_size=inputs.ig_steps)
    return _per_token(found)


def _occlusion(inputs: AttributionInputs) -> np.ndarray:
    import torch
    from captum.attr import Occlusion

    forward, h, _ = _model_function(inputs)
    width = h.shape[-1]
    with torch.no_grad():
        found = Occlusion(forward).attribute(h, sliding_window_shapes=(1, width), strides=(1, width), baselines=0.0,
                                             perturbations_per_eval=32)
    return np.abs(found[0, :, 0].detach().cpu().double().numpy())


@contextlib.contextmanager
def _seeded(inputs: AttributionInputs) -> Iterator[None]:
    """Seed torch's and numpy's global generators (Captum draws from both) per example; restore them after."""
    import torch

    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    seed = int(np.random.default_rng([inputs.seed, inputs.index]).integers(2**31))
    try:
        torch.manual_seed(seed)
        np.random.seed(seed)
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(numpy_state)


def _gradient_shap(inputs: AttributionInputs) -> np.ndarray:
    import torch
    from captum.attr import GradientShap

    forward, h, h_blank = _model_function(inputs)
    baselines = torch.cat([h_blank, torch.zeros_like(h)])
    with _seeded(inputs), torch.enable_grad():
        found = GradientShap(forward).attribute(h, baselines=baselines, n_samples=inputs.ig_steps, stdevs=0.0)
    return _per_token(found)


def _lime(inputs: AttributionInputs) -> np.ndarray:
    import torch
    from captum.attr import Lime

    forward, h, _ = _model_function(inputs)
    n = h.shape[1]
    mask = torch.arange(n, device=h.device)[None, :, None].expand_as(h)
    with _seeded(inputs), torch.no_grad():
        found = Lime(forward).attribute(h, baselines=0.0, feature_mask=mask, n_samples=inputs.lime_samples,
                                        perturbations_per_eval=32)
    return np.abs(found[0, :, 0].detach().cpu().double().numpy())


def _random(inputs: AttributionInputs) -> np.ndarray:
    return np.random.default_rng([inputs.seed, inputs.index]).random(len(inputs.input_ids))


register_attribution(AttributionMethod(
    "saliency", "||g||_2 of the target score's gradient at the first layer's input",
    "Simonyan et al. 2014; Captum Saliency", _saliency, yardstick="saliency",
))
register_attribution(AttributionMethod(
    "grad-x-input", "|sum_d h x g| at the first layer's input", "Shrikumar et al. 2016; Captum InputXGradient",
    _grad_x_input, yardstick="grad_x_input",
))
register_attribution(AttributionMethod(
    "integrated-gradients", "|sum_d IG| at the first layer's input, from the blanked input's value there",
    "Sundararajan et al. 2017; Captum IntegratedGradients", _integrated_gradients, yardstick="integrated_gradients",
))
register_attribution(AttributionMethod(
    "occlusion", "|S(h) - S(h with token j's vector zeroed)| at the first layer's input, one token at a time",
    "Zeiler & Fergus 2014; Captum Occlusion", _occlusion,
))
register_attribution(AttributionMethod(
    "gradient-shap", "|sum_d GradientSHAP| at the first layer's input, baselines the blanked input and 0",
    "Lundberg & Lee 2017; Captum GradientShap", _gradient_shap,
))
register_attribution(AttributionMethod(
    "lime", "|LIME coefficient| of each token, absent tokens zeroed at the first layer's input",
    "Ribeiro et al. 2016; Captum Lime", _lime,
))
register_attribution(AttributionMethod(
    "random", "a uniform random score per token, drawn from default_rng([seed, example])", "baseline", _random,
))
