"""Toy models whose right answers are known exactly, for the evaluation tests.

:class:`OneTokenForSequenceClassification` is a two-class classifier whose logits
depend on the embedding at one fixed position only (:data:`POSITION`): blank-out,
gradients and integrated gradients must single that token out, and faithfulness
can be computed by hand from the model itself. It also reports attention in which
every query attends to that position only, so ``attnflow.evaluate`` can run on it
end to end: raw attention and rollout then rank the position first too.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from attnflow.capture import LoadedModel, load_model
from tests.tiny_models import build_model, build_tokenizer

#: The position the toy classifier reads ([CLS] is 0, so the second word).
POSITION = 2


class OneTokenConfig(PretrainedConfig):
    model_type = "attnflow-one-token-toy"

    def __init__(self, vocab_size: int = 30522, hidden_size: int = 8, n_layers: int = 2, **kwargs):
        kwargs.setdefault("num_labels", 2)
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.n_layers = n_layers


class OneTokenForSequenceClassification(PreTrainedModel):
    config_class = OneTokenConfig
    base_model_prefix = "toy"

    def __init__(self, config: OneTokenConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):  # deterministic weights, set in one_token_model
        pass

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=False,
                return_dict=True, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.embeddings(input_ids)
        logits = self.classifier(torch.tanh(inputs_embeds[:, POSITION]))
        attentions = None
        if output_attentions:
            batch, n = inputs_embeds.shape[:2]
            weights = torch.zeros(batch, 1, n, n, dtype=inputs_embeds.dtype)
            weights[..., POSITION] = 1.0
            attentions = tuple(weights.clone() for _ in range(self.config.n_layers))
        return SequenceClassifierOutput(logits=logits, attentions=attentions)


def one_token_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> LoadedModel:
    """The toy classifier with the MiniLM WordPiece tokenizer, weights drawn from ``seed``."""
    tokenizer = build_tokenizer("bert")
    model = OneTokenForSequenceClassification(OneTokenConfig(vocab_size=len(tokenizer)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.embeddings.weight.copy_(torch.randn(model.embeddings.weight.shape, generator=generator))
        model.classifier.weight.copy_(2 * torch.randn(model.classifier.weight.shape, generator=generator))
        model.classifier.bias.zero_()
    model.to(dtype).eval()
    return load_model(model, tokenizer)


def toy_probability(loaded: LoadedModel, ids: list[int], cls: int) -> float:
    """The toy's probability of class ``cls`` on one sequence, computed directly."""
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits
    return float(torch.softmax(logits.double(), -1)[0, cls])


def tiny_loaded(architecture: str, head: str, *, double: bool = False) -> LoadedModel:
    """A tiny random model from ``tests.tiny_models`` as a LoadedModel, optionally in float64."""
    tokenizer = build_tokenizer(architecture)
    model = build_model(architecture, tokenizer, head=head)
    if double:
        model = model.double()
    return load_model(model, tokenizer)
