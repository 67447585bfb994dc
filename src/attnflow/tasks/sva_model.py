"""The paper's subject-verb agreement model, built from stock ``transformers`` parts.

Abnar & Zuidema (2020) train "GPT-2-style blocks without the causal mask": 6 layers,
8 heads, hidden size 128, a ``[CLS]`` token whose final state feeds the classifier.

Why ``MegatronBertForSequenceClassification``
---------------------------------------------
Megatron-BERT is, layer for layer, that architecture, and it ships with every
``transformers`` release attnflow supports (>= 4.48):

- embeddings: word + learned absolute position (+ one token-type vector, a constant
  bias here since ``type_vocab_size=1``), *no* embedding LayerNorm - as GPT-2;
- each block is pre-LN exactly as GPT-2's: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``
  with a 4x GELU MLP and an output projection after attention;
- a final LayerNorm after the last block - as GPT-2's ``ln_f``;
- bidirectional self-attention (``is_decoder=False``): no causal mask;
- the classifier reads the final state of the first token (``[CLS]``), through BERT's
  pooler (``tanh(W h_cls)``) and a linear layer.

The alternatives were worse. GPT-2 itself has no switch for its causal mask and its
sequence classifier reads the *last* token. RoBERTa-PreLayerNorm adds an embedding
LayerNorm and offsets positions by the padding index. A model class of our own
(``model_type="attnflow-sva"``) would be exact to the last detail but would load only
after attnflow registered it with the ``Auto*`` classes, so the saved folder would stop
being a plain Hugging Face model (``AutoModelForSequenceClassification.from_pretrained``
in a fresh interpreter would fail) and the class would have to follow transformers'
attention-interface changes. Megatron-BERT computes attention eagerly, so
``output_attentions=True`` always returns the weights.

What differs from GPT-2 in detail: the pooler's extra ``tanh`` layer before the
classifier, GELU's erf form vs GPT-2's tanh approximation (we set ``gelu_new``, GPT-2's
own), and weight initialisation (normal, std 0.02, without GPT-2's 1/sqrt(2L) scaling
of residual projections). None changes what attention can express.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sva import LABELS

if TYPE_CHECKING:  # pragma: no cover
    from transformers import MegatronBertForSequenceClassification

#: The paper's sizes.
N_LAYERS = 6
N_HEADS = 8
HIDDEN = 128
#: Most tokens the model accepts ([CLS] included); the generator's sentences have at most 31.
MAX_POSITIONS = 64


def model_config(vocab_size: int, *, pad_token_id: int = 0, dropout: float = 0.1, **overrides: Any) -> Any:
    """The ``MegatronBertConfig`` of the paper's model for a vocabulary of ``vocab_size`` tokens.

    ``overrides`` replace any field (tests use fewer layers).

    Examples
    --------
    >>> cfg = model_config(400)
    >>> cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size, cfg.id2label[1]
    (6, 8, 128, 'plural')
    """
    from transformers import MegatronBertConfig

    settings: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "num_hidden_layers": N_LAYERS,
        "num_attention_heads": N_HEADS,
        "intermediate_size": 4 * HIDDEN,
        "hidden_act": "gelu_new",
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-5,
        "pad_token_id": pad_token_id,
        "is_decoder": False,
        "id2label": dict(LABELS),
        "label2id": {name: index for index, name in LABELS.items()},
        "problem_type": "single_label_classification",
        "architectures": ["MegatronBertForSequenceClassification"],
    }
    settings.update(overrides)
    return MegatronBertConfig(**settings)


def build_model(vocab_size: int, *, seed: int = 0, **config_overrides: Any) -> MegatronBertForSequenceClassification:
    """A freshly initialised SVA model (weights drawn with ``seed``).

    Examples
    --------
    >>> model = build_model(50, seed=0, num_hidden_layers=1)
    >>> type(model).__name__, model.config.is_decoder
    ('MegatronBertForSequenceClassification', False)
    """
    import torch
    from transformers import MegatronBertForSequenceClassification

    config = model_config(vocab_size, **config_overrides)
    torch.manual_seed(seed)
    return MegatronBertForSequenceClassification(config)
