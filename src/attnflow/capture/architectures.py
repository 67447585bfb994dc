"""What attnflow knows about each model architecture, in one table.

Capture finds attention modules by what they compute (``attnflow.capture._hooks``), so
any Hugging Face model gives its attention without an entry here. A few features need
to know more, and read it from this table only:

- the context-mixing graphs (``attnflow.mixing``) need where a block's layer norms
  sit: post-LN (norm after each residual add) or pre-LN (norm in front of each half);
- the streamed head-fused capture (``attnflow.capture._fused_attention``) runs an
  architecture's own ``eager_attention_forward`` one head group at a time, which is
  right only where that function treats heads independently (each such entry is
  checked against the hooked capture in ``tests/capture/test_fused_attention.py``);
- the length limit (``attnflow.capture.model_max_length``) of the RoBERTa family,
  whose position ids start after the padding index.

An architecture without an entry still runs raw attention, rollout, flow and the
gradient methods; the graphs that need its layer norms and the streamed capture say
so or fall back to the hooks.

Examples
--------
>>> architecture("bert").layout, architecture("llama").norms
('post-ln', ('post_attention_layernorm',))
>>> architecture("t5") is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Layout = Literal["post-ln", "pre-ln"]


@dataclass(frozen=True)
class Architecture:
    """The facts about one ``config.model_type``.

    Attributes
    ----------
    layout
        ``"post-ln"``, ``"pre-ln"`` or ``None`` (not known: graphs that need layer norms refuse it).
    norms
        The layer norms, by name under the layer block: post-LN, ``(after attention, after the
        feed-forward)``; pre-LN, ``(in front of the feed-forward,)``, whose input is the residual
        stream after the attention block.
    streamed
        Its modelling module's ``eager_attention_forward`` computes each head on its own.
    position_offset
        Its position ids start after the padding index (usable length
        ``max_position_embeddings - pad_token_id - 1``).
    """

    layout: Layout | None = None
    norms: tuple[str, ...] = ()
    streamed: bool = False
    position_offset: bool = False


_BERT_NORMS = ("attention.output.LayerNorm", "output.LayerNorm")

ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture("post-ln", _BERT_NORMS, streamed=True),
    "roberta": Architecture("post-ln", _BERT_NORMS, streamed=True, position_offset=True),
    "xlm-roberta": Architecture("post-ln", _BERT_NORMS, position_offset=True),
    "camembert": Architecture("post-ln", _BERT_NORMS, position_offset=True),
    "electra": Architecture("post-ln", _BERT_NORMS),
    "distilbert": Architecture("post-ln", ("sa_layer_norm", "output_layer_norm"), streamed=True),
    "megatron-bert": Architecture("pre-ln", ("ln",)),
    "gpt2": Architecture("pre-ln", ("ln_2",), streamed=True),
    "llama": Architecture("pre-ln", ("post_attention_layernorm",), streamed=True),
    "mistral": Architecture("pre-ln", ("post_attention_layernorm",), streamed=True),
    "qwen2": Architecture("pre-ln", ("post_attention_layernorm",), streamed=True),
    "vit": Architecture("pre-ln", ("layernorm_after",), streamed=True),
    "deit": Architecture("pre-ln", ("layernorm_after",), streamed=True),
    "dinov2": Architecture(streamed=True),
    "longformer": Architecture(position_offset=True),
    "data2vec-text": Architecture(position_offset=True),
}

#: Last names of the value projections under an attention module (GPT-2's fused ``c_attn`` holds q, k, v).
VALUE_NAMES: tuple[str, ...] = ("value", "v_lin", "v_proj", "c_attn")
#: Last names of the modules that project the concatenated heads back to the hidden size.
PROJECTION_NAMES = frozenset({"dense", "o_proj", "out_proj", "c_proj", "out_lin"})


def architecture(model_type: str) -> Architecture | None:
    """The table's entry for a ``config.model_type``, or ``None``.

    >>> architecture("gpt2").streamed
    True
    """
    return ARCHITECTURES.get(model_type)


def streamed_modules() -> frozenset[str]:
    """The modelling modules whose eager attention the streamed capture may call head group by head group.

    >>> "transformers.models.gpt2.modeling_gpt2" in streamed_modules()
    True
    """
    found = set()
    for model_type, entry in ARCHITECTURES.items():
        if entry.streamed:
            module = model_type.replace("-", "_")
            found.add(f"transformers.models.{module}.modeling_{module}")
    return frozenset(found)
