"""A classifier built so that head 1 of layer 1 attends to the previous token and head 2 spreads evenly.

Attention is ``softmax(strength * pattern)``, with ``strength`` a parameter, so the output
depends on it and gradients flow; the heads' outputs go through an ``attention.o_proj``
projection, so attnflow's head masks find them as in a real model.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from attnflow.capture import LoadedModel, load_model
from tests.tiny_models import build_tokenizer


class PositionalConfig(PretrainedConfig):
    model_type = "attnflow-positional-toy"

    def __init__(self, vocab_size: int = 30522, hidden_size: int = 8, num_attention_heads: int = 2, **kwargs):
        kwargs.setdefault("num_labels", 2)
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads


class ToyAttention(nn.Module):
    def __init__(self, config: PositionalConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.strength = nn.Parameter(torch.tensor(30.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n, width = x.shape
        previous = torch.zeros(n, n, dtype=x.dtype)
        previous[0, 0] = 1.0
        previous[torch.arange(1, n), torch.arange(n - 1)] = 1.0
        pattern = torch.stack([previous] + [torch.zeros(n, n, dtype=x.dtype)] * (self.heads - 1))
        weights = torch.softmax(self.strength * pattern, dim=-1).expand(batch, -1, -1, -1)
        values = self.value(x).reshape(batch, n, self.heads, width // self.heads).transpose(1, 2)
        context = (weights @ values).transpose(1, 2).reshape(batch, n, width)
        return x + self.o_proj(context), weights


class PositionalToyForSequenceClassification(PreTrainedModel):
    config_class = PositionalConfig
    base_model_prefix = "toy"

    def __init__(self, config: PositionalConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.attention = ToyAttention(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):  # weights are drawn in positional_model
        pass

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=False,
                return_dict=True, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.embeddings(input_ids)
        hidden, weights = self.attention(inputs_embeds)
        logits = self.classifier(torch.tanh(hidden.mean(dim=1)))
        return SequenceClassifierOutput(logits=logits, attentions=(weights,) if output_attentions else None)


def positional_model(seed: int = 0) -> LoadedModel:
    """The toy with the MiniLM WordPiece tokenizer, in float64, weights drawn from ``seed``."""
    tokenizer = build_tokenizer("bert")
    model = PositionalToyForSequenceClassification(PositionalConfig(vocab_size=len(tokenizer)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name != "attention.strength":
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    model.double().eval()
    return load_model(model, tokenizer)
