"""The bundled MiniLM-L6, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnflow.capture import capture_attention
from tests.tolerances import float32_sum_bound, model_float32_bound

pytestmark = pytest.mark.e2e

SENTENCES = [
    "The keys to the cabinet are on the table.",
    "Attention rollout follows information through the layers.",
    "Short one.",
]


def test_default_model_is_minilm(minilm):
    assert minilm.name == "minilm"
    assert type(minilm.model).__name__ == "BertModel"
    assert not minilm.is_decoder and minilm.max_length == 512


def test_capture_with_default_model():
    cap = capture_attention("The keys to the cabinet are on the table.")
    assert cap.model_name == "minilm"
    assert cap.attentions.shape[:2] == (6, 12)
    assert cap.tokens[0] == "[CLS]" and cap.tokens[-1] == "[SEP]"
    assert cap.special_positions == (0, cap.n_tokens - 1)
    assert cap.tokens[1:4] == ["the", "keys", "to"]
    n = cap.n_tokens
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, rtol=0, atol=float32_sum_bound(n))  # n float32 terms
    assert not cap.is_causal


def test_by_name_and_folder_agree(minilm):
    by_object = capture_attention(SENTENCES[0], minilm)
    by_name = capture_attention(SENTENCES[0], "MiniLM")
    by_folder = capture_attention(SENTENCES[0], minilm.path)
    np.testing.assert_array_equal(by_object.attentions, by_name.attentions)
    np.testing.assert_array_equal(by_object.attentions, by_folder.attentions)
    assert by_name.model_name == "minilm"


def test_equals_eager_forward_and_batch(minilm):
    from transformers import AutoModel

    eager = AutoModel.from_pretrained(minilm.path, attn_implementation="eager").eval()
    batched = capture_attention(SENTENCES, minilm)
    for text, cap in zip(SENTENCES, batched, strict=True):
        encoded = minilm.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            want = torch.stack(eager(**encoded, output_attentions=True).attentions, 1)[0]
        # a padded batch against one text: another reduction order in every layer
        np.testing.assert_allclose(cap.attentions, want.double().numpy(), atol=model_float32_bound(minilm.model.config))
    assert minilm.model.config._attn_implementation == "sdpa"


@pytest.mark.slow
def test_long_text_truncates_to_512(minilm):
    text = "word " * 600
    cap = capture_attention(text, minilm, truncate=True)
    assert cap.n_tokens == 512 and cap.truncated and cap.tokens[-1] == "[SEP]"
