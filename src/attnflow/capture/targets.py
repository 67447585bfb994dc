"""What a model's output is measured by when judging explanations: the *target*.

A target turns one forward pass into one number per input sequence. Three kinds
of model, told apart by ``config.architectures`` (as :func:`load_model` does):

- a classifier (``...ForSequenceClassification``): a class, either the one the
  model predicts for the unperturbed input (``"predicted"``, the default), one
  given by index (``1``) or label name (``"positive"``, ``"label:norm"``), or the
  example's own gold label from the data (``"gold"``);
- a causal language model (``...ForCausalLM``, ``...LMHeadModel``): a next token
  after the last input token, the predicted one by default, or one given by
  vocabulary id or as a string that is a single token; or the *contrast* of two
  next tokens, ``"are|is"``: ``log p(are) - log p(is)``, the score of an agreement
  task (Linzen et al. 2016), which grad-rollout and the gradient yardsticks then
  explain rather than one token's logit;
- any model, including a bare encoder such as the bundled MiniLM: a scalar of the
  mean-pooled last hidden state, its cosine similarity to a reference text
  (``"cosine:REFERENCE TEXT"``) or its Euclidean norm (``"norm"``, the default
  for bare encoders).

Each target gives two numbers per sequence (:meth:`BoundTarget.forward`):

- ``kind="value"``: probability-like, what blank-out and faithfulness compare:
  the softmax probability of the class or token, or the cosine / norm;
- ``kind="score"``: the differentiable scalar input gradients and integrated
  gradients differentiate: the class's or token's logit (it does not saturate
  as a probability does), or the cosine / norm itself.

The class (or token) of ``"predicted"`` is fixed per example on the unperturbed
input (:meth:`Target.bind`); perturbed copies are scored on that same class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import AttnflowError
from ._eager import eager_attention
from ._failures import model_failures

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .models import LoadedModel

Head = Literal["classifier", "causal_lm", "encoder"]
ValueKind = Literal["value", "score"]

#: The target specs accepted as strings, for help texts and error messages.
TARGET_HELP = (
    "'predicted' (classifiers, causal LMs), a class index, a label name (or 'label:NAME'), "
    "'gold' (each example's label), 'A|B' (causal LMs: log p(A) - log p(B) of the next token), "
    "'cosine:REFERENCE TEXT' or 'norm' (pooled embedding)"
)

_PREDICTED = {"predicted", "pred", "prediction"}


@dataclass(frozen=True)
class TargetSpec:
    """A parsed, model-independent target: ``kind`` plus its argument.

    ``kind`` is one of ``"auto"``, ``"predicted"``, ``"index"``, ``"label"``,
    ``"gold"``, ``"contrast"``, ``"cosine"``, ``"norm"``. ``value`` is the index, label
    name, reference text, or for a contrast the two forms ``(A, B)``.

    Examples
    --------
    >>> TargetSpec("cosine", "a cat").text
    'cosine:a cat'
    """

    kind: str
    value: int | str | None = None

    @property
    def text(self) -> str:
        """The spec written back as the string :func:`parse_target` reads."""
        if self.kind == "index":
            return str(self.value)
        if self.kind == "label":
            return f"label:{self.value}"
        if self.kind == "cosine":
            return f"cosine:{self.value}"
        if self.kind == "contrast":
            return "|".join(self.value)  # type: ignore[arg-type]
        return self.kind


def parse_target(target: Any) -> TargetSpec:
    """Read a target given as ``None``, an ``int``, a string or a :class:`TargetSpec`.

    Strings: ``"predicted"``, digits (a class index, or a token id for causal LMs),
    ``"gold"``, ``"norm"``, ``"cosine:TEXT"``, ``"label:NAME"``, ``"A|B"`` (a contrast of
    two next tokens); any other string is a label name (or, for a causal LM, a token).
    ``None``, ``""`` and ``"auto"`` mean the model's default.

    Examples
    --------
    >>> parse_target(None), parse_target("2")
    (TargetSpec(kind='auto', value=None), TargetSpec(kind='index', value=2))
    >>> parse_target("cosine: a cat sat")
    TargetSpec(kind='cosine', value='a cat sat')
    >>> parse_target("positive")
    TargetSpec(kind='label', value='positive')
    >>> parse_target("are|is")
    TargetSpec(kind='contrast', value=('are', 'is'))
    """
    if isinstance(target, TargetSpec):
        return target
    if target is None:
        return TargetSpec("auto")
    if isinstance(target, bool):
        raise AttnflowError(f"The 'target' parameter must be one of {TARGET_HELP}; got {target!r} instead.")
    if isinstance(target, int) or (hasattr(target, "__index__") and not isinstance(target, str)):
        index = int(target)
        if index < 0:
            raise AttnflowError(f"The 'target' parameter, a class index, must be >= 0; got {index} instead.")
        return TargetSpec("index", index)
    if not isinstance(target, str):
        raise AttnflowError(
            f"The 'target' parameter must be one of {TARGET_HELP}; got {type(target).__name__} instead."
        )
    text = target.strip()
    key = text.lower()
    if key in ("", "auto", "default"):
        return TargetSpec("auto")
    if key in _PREDICTED:
        return TargetSpec("predicted")
    if key == "gold":
        return TargetSpec("gold")
    if key == "norm":
        return TargetSpec("norm")
    if re.fullmatch(r"[+-]?\d+", text):
        return parse_target(int(text))
    prefix, sep, rest = text.partition(":")
    if sep and prefix.strip().lower() in ("cosine", "cos"):
        reference = rest.strip()
        if not reference:
            raise AttnflowError(
                "The 'target' parameter 'cosine:REFERENCE' needs a reference text after the colon; "
                f"got {target!r}."
            )
        return TargetSpec("cosine", reference)
    if "|" in text and not (sep and prefix.strip().lower() == "label"):
        forms = text.split("|")
        if len(forms) != 2 or not all(form.strip() for form in forms):
            raise AttnflowError(
                f"A contrast target is two next tokens 'A|B' (log p(A) - log p(B)), such as 'are|is'; got {target!r}."
            )
        return TargetSpec("contrast", (forms[0], forms[1]))
    if sep and prefix.strip().lower() == "label":
        if not rest:
            raise AttnflowError(f"The 'target' parameter 'label:NAME' needs a label name; got {target!r}.")
        return TargetSpec("label", rest)
    return TargetSpec("label", target)


def model_head(model: Any) -> Head:
    """``"classifier"``, ``"causal_lm"`` or ``"encoder"``, from the model's class name.

    Examples
    --------
    >>> class BertForSequenceClassification: ...
    >>> model_head(BertForSequenceClassification())
    'classifier'
    """
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return "classifier"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal_lm"
    return "encoder"


@dataclass
class Target:
    """A target resolved against one model; :meth:`bind` fixes it for one example.

    Attributes
    ----------
    spec
        What the user asked for.
    head
        The model kind (:func:`model_head`).
    kind
        ``"class"`` (classifier probability), ``"next_token"`` (causal LM),
        ``"contrast"`` (causal LM: ``log p(A) - log p(B)`` of the next token),
        ``"cosine"`` or ``"norm"`` (mean-pooled last hidden state).
    index
        The fixed class or token id (for a contrast, A's), or ``None`` when it is
        chosen per example (``predicted``, ``gold``).
    versus
        A contrast's second token id, B's.
    labels
        The classifier's ``id2label`` (empty for other heads).
    """

    spec: TargetSpec
    head: Head
    kind: Literal["class", "next_token", "contrast", "cosine", "norm"]
    index: int | None = None
    labels: dict[int, str] = field(default_factory=dict)
    reference: Any = field(default=None, repr=False)
    model_name: str = ""
    versus: int | None = None

    @property
    def pooled(self) -> bool:
        """Whether the target reads the mean-pooled embedding (cosine, norm)."""
        return self.kind in ("cosine", "norm")

    @property
    def uses_gold(self) -> bool:
        """Whether each example's own label chooses the class."""
        return self.spec.kind == "gold"

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, recorded in every output.

        Examples
        --------
        >>> Target(TargetSpec("norm"), "encoder", "norm").describe()["measure"]
        'Euclidean norm of the mean-pooled last hidden state'
        """
        spec = self.spec.text if self.spec.kind != "auto" else f"auto ({self._auto_name()})"
        out: dict[str, Any] = {"spec": spec, "kind": self.kind, "head": self.head}
        if self.kind == "class":
            out["measure"] = "softmax probability of the class (blank-out, faithfulness); its logit (gradients)"
            if self.index is not None:
                out["class"] = self.index
                out["label"] = self.labels.get(self.index, str(self.index))
        elif self.kind == "next_token":
            out["measure"] = (
                "probability of the next token after the last input token (blank-out, faithfulness); "
                "its logit (gradients)"
            )
            if self.index is not None:
                out["token_id"] = self.index
        elif self.kind == "contrast":
            out["measure"] = "log p(A) - log p(B) of the next token after the last input token (every use)"
            out["token_ids"] = [self.index, self.versus]
        elif self.kind == "cosine":
            out["measure"] = "cosine similarity of the mean-pooled last hidden state to the reference text's"
            out["reference"] = self.spec.value
        else:
            out["measure"] = "Euclidean norm of the mean-pooled last hidden state"
        return out

    def _auto_name(self) -> str:
        return "predicted" if self.kind in ("class", "next_token") else self.kind

    def bind(self, loaded: LoadedModel, input_ids: list[int], label: Any = None) -> BoundTarget:
        """Fix the target for one example: choose its class and compute its value on ``input_ids``.

        ``label`` is the example's gold label (a label name or an index), used when
        the spec is ``"gold"``. This runs the model once; a capture that runs it anyway
        binds from that pass instead (:func:`attnflow.capture.plan.capture_planned`).
        """
        import torch


        ids = torch.tensor([input_ids], dtype=torch.long, device=_device(loaded.model))
        mask = torch.ones_like(ids)
        with eager_attention(loaded.model), torch.no_grad():
            outputs = run_model(loaded.model, self, input_ids=ids, attention_mask=mask)
            return self.bind_outputs(outputs, mask, label)

    def forward_options(self) -> dict[str, Any]:
        """The forward-pass arguments this target's value needs read (hidden states for pooled targets).

        Examples
        --------
        >>> Target(TargetSpec("norm"), "causal_lm", "norm").forward_options()
        {'output_hidden_states': True, 'use_cache': False}
        """
        options: dict[str, Any] = {}
        if self.pooled and self.head != "encoder":
            options["output_hidden_states"] = True
        if self.head == "causal_lm":
            options["use_cache"] = False
        return options

    def bind_outputs(self, outputs: Any, attention_mask: torch.Tensor, label: Any = None) -> BoundTarget:
        """:meth:`bind` from the outputs of a forward pass over one example (batch of one, no padding).

        The pass must have run with :meth:`forward_options` and with every position's
        logits (no ``logits_to_keep``).
        """
        return self.bind_rows(outputs, attention_mask, [label])[0]

    def bind_rows(self, outputs: Any, attention_mask: torch.Tensor, labels: Sequence[Any]) -> list[BoundTarget]:
        """:meth:`bind` for each row of a right-padded batch's outputs, ``labels`` the rows' gold labels.

        A row's class and value are read at its real tokens (``attention_mask``), without
        gradients, so a pass that is differentiated next (head gradients) fixes its target too.
        """
        import torch

        with torch.no_grad():
            logits = _head_logits(self, outputs, attention_mask)
            bounds = []
            for row, label in enumerate(labels):
                index = self.resolve_label(label) if self.uses_gold else self.index
                predicted = None if logits is None else int(logits[row].argmax())
                if index is None and self.kind in ("class", "next_token"):
                    index = predicted
                bound = BoundTarget(self, index, predicted)
                bound.value = float(bound.from_outputs(outputs, attention_mask, "value")[row])
                bounds.append(bound)
        return bounds

    def resolve_label(self, label: Any) -> int:
        """The class index of a gold label given as a label name or an index.

        Raises :class:`AttnflowError` naming the model's labels when it has no such label.
        """
        if self.kind != "class":
            raise AttnflowError(
                f"The target 'gold' needs a classifier; the model {self.model_name!r} is a {self.head}."
            )
        if label is None or (isinstance(label, float) and label != label) or str(label).strip() == "":
            raise AttnflowError("The target 'gold' needs a label for every example; an example has none.")
        index = _label_index(label, self.labels)
        if index is None:
            raise AttnflowError(
                f"The label {label!r} does not exist in the model {self.model_name!r}; its labels are "
                f"{_label_list(self.labels)}."
            )
        return index


@dataclass
class BoundTarget:
    """A :class:`Target` fixed for one example: the class (or token) and the unperturbed value.

    ``forward(model, input_ids=... | inputs_embeds=..., attention_mask=..., kind=...)``
    returns one number per sequence, a ``torch`` tensor ``(B,)``; sequences are
    padded on the right and ``attention_mask`` marks the real tokens.
    """

    target: Target
    index: int | None
    predicted: int | None = None
    value: float = float("nan")

    def forward(
        self,
        model: Any,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor,
        kind: ValueKind = "value",
    ) -> torch.Tensor:
        """Run ``model`` and return the target per sequence, ``(B,)``; differentiable for ``kind="score"``."""
        outputs = run_model(
            model, self.target, input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask
        )
        return self.from_outputs(outputs, attention_mask, kind)

    def from_outputs(self, outputs: Any, attention_mask: torch.Tensor, kind: ValueKind) -> torch.Tensor:
        """The target per sequence from model outputs already computed."""
        import torch

        target = self.target
        if target.kind == "contrast":
            logits = _head_logits(target, outputs, attention_mask)
            difference = logits[:, target.index] - logits[:, target.versus]  # the log-softmax's normaliser cancels
            return difference if kind == "score" else difference.to(torch.float64)
        if target.kind in ("class", "next_token"):
            logits = _head_logits(target, outputs, attention_mask)
            if logits is None or self.index is None:  # pragma: no cover - bind() always sets the index
                raise AttnflowError(f"The target {target.spec.text!r} has no class for this example.")
            if kind == "score":
                return logits[:, self.index]
            return torch.softmax(logits.to(torch.float64), dim=-1)[:, self.index]
        pooled = _mean_pool(_last_hidden(outputs), attention_mask)
        if target.kind == "norm":
            return torch.linalg.vector_norm(pooled, dim=-1)
        reference = target.reference.to(pooled.dtype).to(pooled.device)
        return torch.nn.functional.cosine_similarity(pooled, reference[None], dim=-1)

    def describe(self) -> dict[str, Any]:
        """The target's description with this example's class, label and value."""
        out = self.target.describe()
        if self.index is not None and self.target.kind != "contrast":
            key = "class" if self.target.kind == "class" else "token_id"
            out[key] = self.index
            if self.target.kind == "class":
                out["label"] = self.target.labels.get(self.index, str(self.index))
        out["value"] = self.value
        return out


def resolve_target(target: Any, loaded: LoadedModel) -> Target:
    """Resolve a target spec against a model, or raise one clear error if the model cannot give it.

    Parameters
    ----------
    target
        Anything :func:`parse_target` reads.
    loaded
        The model (an :class:`attnflow.capture.LoadedModel`).

    Returns
    -------
    Target
        Defaults: ``predicted`` for classifiers and causal LMs, ``norm`` for bare encoders.

    Raises
    ------
    AttnflowError
        For a class index out of range, a label the model does not have, ``predicted``
        or a class on a model without a classification or language-model head, or a
        multi-token string as a causal LM's target.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> resolve_target(None, load_model()).describe()["spec"]
    'auto (norm)'
    """
    spec = parse_target(target)
    model = loaded.model
    head = model_head(model)
    name = loaded.name
    if spec.kind in ("cosine", "norm") or (spec.kind == "auto" and head == "encoder"):
        kind: Literal["cosine", "norm"] = "cosine" if spec.kind == "cosine" else "norm"
        resolved = Target(spec, head, kind, model_name=name)
        if kind == "cosine":
            resolved.reference = _reference_embedding(loaded, resolved, str(spec.value))
        return resolved
    if spec.kind == "contrast" and head != "causal_lm":
        raise AttnflowError(
            f"A contrast target {spec.text!r} compares two next tokens, so it needs a causal language model; "
            f"the model {name!r} is a {head}."
        )
    if head == "encoder":
        raise AttnflowError(
            f"The target {spec.text!r} needs a classification head, but the model {name!r} "
            f"({type(model).__name__}) is a bare encoder; use 'cosine:REFERENCE TEXT' or 'norm' "
            "(a scalar of the mean-pooled embedding)."
        )
    if head == "classifier":
        labels = _id2label(model)
        resolved = Target(spec, head, "class", labels=labels, model_name=name)
        if spec.kind == "index":
            if int(spec.value) >= len(labels):  # type: ignore[arg-type]
                raise AttnflowError(
                    f"The target class {spec.value} does not exist: the model {name!r} has {len(labels)} "
                    f"classes (0 to {len(labels) - 1}): {_label_list(labels)}."
                )
            resolved.index = int(spec.value)  # type: ignore[arg-type]
        elif spec.kind == "label":
            index = _label_index(spec.value, labels)
            if index is None:
                raise AttnflowError(
                    f"The target label {spec.value!r} does not exist in the model {name!r}; its labels are "
                    f"{_label_list(labels)}."
                )
            resolved.index = index
        return resolved
    # causal LM
    if spec.kind == "contrast":
        first, second = (_single_token(loaded, form) for form in spec.value)  # type: ignore[union-attr]
        if first == second:
            raise AttnflowError(f"The two forms of the contrast target {spec.text!r} are the same token.")
        return Target(spec, head, "contrast", index=first, versus=second, model_name=name)
    if spec.kind == "gold":
        raise AttnflowError(
            f"The target 'gold' needs a classifier; the model {name!r} is a causal language model. "
            "Use 'predicted' (the next token), a token id or a one-token string."
        )
    resolved = Target(spec, head, "next_token", model_name=name)
    vocab = int(model.get_input_embeddings().num_embeddings)
    if spec.kind == "index":
        if int(spec.value) >= vocab:  # type: ignore[arg-type]
            raise AttnflowError(
                f"The target token id {spec.value} does not exist: the model {name!r} has a vocabulary of "
                f"{vocab} tokens."
            )
        resolved.index = int(spec.value)  # type: ignore[arg-type]
    elif spec.kind == "label":
        ids = loaded.tokenizer(str(spec.value), add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise AttnflowError(
                f"The target {spec.value!r} must be a single token of the model {name!r}'s vocabulary to be "
                f"a next-token target; it is {len(ids)} tokens. Give a token id instead."
            )
        resolved.index = int(ids[0])
    return resolved


def _single_token(loaded: LoadedModel, form: str) -> int:
    """The one token id of a contrast form: a token id, or a word as it follows another (with its space).

    A form that starts with a space is taken as written; any other is read as a word that
    continues the text, so ``"are"`` means the token of ``" are"``.
    """
    if form.strip().isdigit():
        token = int(form.strip())
        vocab = int(loaded.model.get_input_embeddings().num_embeddings)
        if token >= vocab:
            raise AttnflowError(f"The contrast token id {token} does not exist: the vocabulary has {vocab} tokens.")
        return token
    text = form if form[:1].isspace() else f" {form}"
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = ", ".join(repr(piece) for piece in loaded.tokenizer.convert_ids_to_tokens(ids))
        raise AttnflowError(
            f"The contrast form {text!r} is {len(ids)} tokens of the model {loaded.name!r} ({pieces}), not one; "
            "give forms that are single tokens, or token ids."
        )
    return int(ids[0])


def run_model(
    model: Any,
    target: Target,
    *,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    attention_mask: torch.Tensor,
    output_attentions: bool = False,
) -> Any:
    """One forward pass with what ``target`` needs (hidden states only for pooled targets)."""
    kwargs: dict[str, Any] = {"attention_mask": attention_mask, "return_dict": True}
    if output_attentions:
        kwargs["output_attentions"] = True
    if inputs_embeds is not None:
        kwargs["inputs_embeds"] = inputs_embeds
    else:
        kwargs["input_ids"] = input_ids
    kwargs.update(target.forward_options())
    with model_failures(f"The model {target.model_name!r} failed on a forward pass"):
        return model(**kwargs)


def _device(model: Any) -> Any:
    return getattr(model, "device", None)


def _id2label(model: Any) -> dict[int, str]:
    config = model.config
    mapping = getattr(config, "id2label", None) or {}
    count = int(getattr(config, "num_labels", len(mapping)) or len(mapping))
    return {i: str(mapping.get(i, mapping.get(str(i), f"LABEL_{i}"))) for i in range(count)}


def _label_index(label: Any, labels: dict[int, str]) -> int | None:
    if isinstance(label, bool):
        return None
    if isinstance(label, (int,)) or (hasattr(label, "__index__") and not isinstance(label, str)):
        index = int(label)
        return index if 0 <= index < len(labels) else None
    if isinstance(label, float) and label.is_integer():
        return _label_index(int(label), labels)
    text = str(label).strip()
    for index, name in labels.items():
        if name == text:
            return index
    lowered = text.lower()
    matches = [index for index, name in labels.items() if name.lower() == lowered]
    if len(matches) == 1:
        return matches[0]
    if re.fullmatch(r"\d+", text):
        index = int(text)
        return index if index < len(labels) else None
    return None


def _label_list(labels: dict[int, str]) -> str:
    return ", ".join(f"{index}={name!r}" for index, name in labels.items()) or "(none)"


def _head_logits(target: Target, outputs: Any, attention_mask: torch.Tensor) -> torch.Tensor | None:
    """``(B, C)``: class logits, or the next-token logits at each sequence's last real token."""
    import torch

    if target.kind == "class":
        return outputs.logits
    if target.kind in ("next_token", "contrast"):
        logits = outputs.logits
        last = attention_mask.sum(dim=1).long() - 1
        return logits[torch.arange(logits.shape[0], device=logits.device), last]
    return None


def _last_hidden(outputs: Any) -> torch.Tensor:
    hidden = getattr(outputs, "last_hidden_state", None)
    if hidden is None:
        states = getattr(outputs, "hidden_states", None)
        if not states:
            raise AttnflowError("The model returned no hidden states; a pooled-embedding target cannot be computed.")
        hidden = states[-1]
    return hidden


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over the real tokens (sentence-transformers' mean pooling)."""
    weights = attention_mask.to(hidden.dtype)[..., None]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _reference_embedding(loaded: LoadedModel, target: Target, text: str) -> torch.Tensor:
    import torch


    kwargs: dict[str, Any] = {"add_special_tokens": True}
    if loaded.max_length is not None:
        kwargs.update(truncation=True, max_length=loaded.max_length)
    ids = loaded.tokenizer(text, **kwargs)["input_ids"]
    if not ids:
        raise AttnflowError(f"The reference text {text!r} of the cosine target tokenizes to no tokens.")
    tensor = torch.tensor([ids], dtype=torch.long, device=_device(loaded.model))
    mask = torch.ones_like(tensor)
    with eager_attention(loaded.model), torch.no_grad():
        outputs = run_model(loaded.model, target, input_ids=tensor, attention_mask=mask)
        return _mean_pool(_last_hidden(outputs), mask)[0].detach()
