"""Each context-mixing graph against its definition, computed directly, on tiny models of every architecture.

The references here recompute everything from the model's own weights (value and
output projections, layer norms) and the layer inputs, with explicit loops over heads,
queries and keys; value zeroing is checked by literally zeroing one value vector in an
unbatched forward pass and rerunning the model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnflow.capture import capture_attention, load_model
from attnflow.errors import AttnflowError
from attnflow.mixing import available_graphs, capture_mixing, get_graph, graph_matrices
from attnflow.mixing._capture import layer_modules
from attnflow.mixing.alti import alti_vectors
from attnflow.mixing.decompose import attention_vectors
from attnflow.mixing.globenc import globenc_vectors

TEXT = "The keys to the cabinet are here."
ARCHS = ("bert", "roberta", "distilbert", "gpt2", "llama")


@pytest.fixture(scope="module")
def captures(tiny_model_paths):
    """Architecture -> (loaded model, MixingCapture of TEXT), the bundled sva included."""
    found = {}
    for arch in ARCHS:
        loaded = load_model(tiny_model_paths[arch])
        found[arch] = (loaded, capture_mixing(loaded, capture_attention(TEXT, loaded).input_ids))
    loaded = load_model("sva")
    found["sva"] = (loaded, capture_mixing(loaded, capture_attention("the keys to the cabinet", loaded).input_ids))
    return found


def _weights(module) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` with ``y = x @ W + b`` for an nn.Linear or a GPT-2 Conv1D."""
    weight = module.weight.detach().double().numpy()
    if type(module).__name__ != "Conv1D":
        weight = weight.T
    bias = module.bias.detach().double().numpy() if module.bias is not None else np.zeros(weight.shape[1])
    return weight, bias


def _reference_vectors(loaded, capture, index: int) -> np.ndarray:
    """``T[i, j] = sum_h a^h_ij (a_j W_V^h + b_V^h) W_O^h + [i==j] x_i`` by loops, from the modules' weights."""
    parts = layer_modules(loaded.model)[index]
    layer = capture.layers[index]
    w_v, b_v = _weights(parts.value)
    if parts.value_slice is not None:  # GPT-2: the value third of the fused projection
        third = w_v.shape[1] // 3
        w_v, b_v = w_v[:, 2 * third:], b_v[2 * third:]
    w_o, _ = _weights(parts.projection)
    n_heads = layer.weights.shape[0]
    head_dim = w_o.shape[0] // n_heads
    n_kv = w_v.shape[1] // head_dim
    values = layer.attention_input @ w_v + b_v  # (n, KV * d)
    n, width = layer.x.shape
    out = np.zeros((n, n, width))
    for h in range(n_heads):
        kv = h // (n_heads // n_kv)
        v = values[:, kv * head_dim:(kv + 1) * head_dim]
        o = w_o[h * head_dim:(h + 1) * head_dim]
        for i in range(n):
            for j in range(n):
                out[i, j] += layer.weights[h, i, j] * (v[j] @ o)
    for i in range(n):
        out[i, i] += layer.x[i]
    return out


def _linear_ln(z: np.ndarray, s: np.ndarray, gamma: np.ndarray, eps: float) -> np.ndarray:
    """The layer norm's linear part for one row: ``gamma * (z - mean z) / sqrt(var(s) + eps)``."""
    return gamma * (z - z.mean()) / np.sqrt(s.var() + eps)


def _rownorm(m: np.ndarray) -> np.ndarray:
    return m / m.sum(-1, keepdims=True)


@pytest.mark.parametrize("arch", [*ARCHS, "sva"])
def test_the_decomposition_sums_to_what_the_model_computed(captures, arch):
    loaded, capture = captures[arch]
    assert np.allclose(capture.attentions, capture_attention(TEXT if arch != "sva" else "the keys to the cabinet",
                                                            loaded).attentions)
    for layer in capture.layers:
        total = attention_vectors(layer).sum(axis=1) + layer.b_o
        if capture.layout == "post-ln":
            assert np.allclose(total, layer.ln1_input, atol=1e-4)
            vectors, y = alti_vectors(layer)
            assert np.allclose(y, layer.ln1_output, atol=1e-4)  # sum through LN1 is exact
        else:
            assert np.allclose(total, layer.block_output, atol=1e-4)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_vectors_match_loops_over_heads_from_the_weights(captures, arch):
    loaded, capture = captures[arch]
    for index in range(capture.n_layers):
        assert np.allclose(attention_vectors(capture.layers[index]), _reference_vectors(loaded, capture, index),
                           atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama", "sva"])
def test_norm_and_alti_follow_their_definitions(captures, arch):
    loaded, capture = captures[arch]
    norm = graph_matrices("norm", loaded, capture=capture)
    alti = graph_matrices("alti", loaded, capture=capture)
    for index, layer in enumerate(capture.layers):
        vectors = _reference_vectors(loaded, capture, index)
        n = vectors.shape[0]
        assert np.allclose(norm[index], _rownorm(np.linalg.norm(vectors, axis=-1)), atol=1e-6)
        expected = np.zeros((n, n))
        for i in range(n):
            if capture.layout == "post-ln":
                ln = layer.ln1
                parts = [_linear_ln(vectors[i, j], layer.ln1_input[i], ln.gamma, ln.eps) for j in range(n)]
                y = layer.ln1_output[i]  # what the model's first layer norm returned
            else:
                parts = [vectors[i, j] for j in range(n)]
                y = layer.block_output[i]  # the residual stream after attention, as the model computed it
            for j in range(n):
                expected[i, j] = max(0.0, np.abs(y).sum() - np.abs(y - parts[j]).sum())
        assert np.allclose(alti[index], _rownorm(expected), atol=1e-4)
        if capture.is_causal:
            assert np.all(np.triu(norm[index], 1) == 0) and np.all(np.triu(alti[index], 1) == 0)


def _globenc_norms_by_loops(loaded, capture) -> np.ndarray:
    """``(L, n, n)``: GlobEnc's raw ``N_Enc`` matrices, recomputed by loops from the modules' weights."""
    out = []
    for index, layer in enumerate(capture.layers):
        vectors = _reference_vectors(loaded, capture, index)
        n = vectors.shape[0]
        norms = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                first = _linear_ln(vectors[i, j], layer.ln1_input[i], layer.ln1.gamma, layer.ln1.eps)
                norms[i, j] = np.linalg.norm(_linear_ln(first, layer.ln2_input[i], layer.ln2.gamma, layer.ln2.eps))
        out.append(norms)
    return np.stack(out)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_globenc_rollout_is_the_authors_product_of_raw_matrices(captures, arch):
    """mohsenfayyaz/GlobEnc multiplies the raw N_Enc matrices (its per-layer normalisation is commented
    out); attnflow's globenc/rollout is that product's explained row, divided by its sum for display."""
    import attnflow

    loaded, capture = captures[arch]
    norms = _globenc_norms_by_loops(loaded, capture)
    result = attnflow.explain(TEXT, loaded, methods=["raw", "rollout", "flow"], output="cls",
                              graph=["globenc", "globenc-rownorm"])
    product = np.eye(norms.shape[-1])
    rownorm_product = np.eye(norms.shape[-1])
    for index in range(norms.shape[0]):
        product = norms[index] @ product  # full matrix products, not attnflow's vector walk
        rownorm_product = _rownorm(norms[index]) @ rownorm_product
        layer = result.scores["globenc/rollout"][index]
        np.testing.assert_allclose(layer, product[0] / product[0].sum(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result.scores["globenc-rownorm/rollout"][index], rownorm_product[0],
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result.scores["globenc/raw"][index], _rownorm(norms[index])[0],
                                   rtol=1e-5, atol=1e-7)
    # The aggregations differ: the raw product weighs layers by their norms, the normalised one does not.
    assert np.abs(result.scores["globenc/rollout"][-1] - result.scores["globenc-rownorm/rollout"][-1]).max() > 1e-3
    # flow runs on the row-normalised matrices in both graphs
    np.testing.assert_allclose(result.scores["globenc/flow"], result.scores["globenc-rownorm/flow"], atol=1e-12)


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_globenc_follows_its_definition_and_its_decomposition(captures, arch):
    loaded, capture = captures[arch]
    globenc = graph_matrices("globenc", loaded, capture=capture)
    for index, layer in enumerate(capture.layers):
        vectors = _reference_vectors(loaded, capture, index)
        n = vectors.shape[0]
        expected = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                first = _linear_ln(vectors[i, j], layer.ln1_input[i], layer.ln1.gamma, layer.ln1.eps)
                expected[i, j] = np.linalg.norm(_linear_ln(first, layer.ln2_input[i], layer.ln2.gamma, layer.ln2.eps))
        assert np.allclose(globenc[index], _rownorm(expected), atol=1e-6)
        # The shares, plus LN2 of what no token owns (LN1's bias terms and the FFN output), are the layer output.
        shares = globenc_vectors(layer)
        _, y = alti_vectors(layer)
        unowned = (y - attention_vectors_through_ln1(layer).sum(axis=1)) + (layer.ln2_input - layer.ln1_output)
        rest = np.stack([_linear_ln(unowned[i], layer.ln2_input[i], layer.ln2.gamma, layer.ln2.eps) for i in range(n)])
        assert np.allclose(shares.sum(axis=1) + rest + layer.ln2.beta, layer.output, atol=1e-4)


def attention_vectors_through_ln1(layer):
    vectors, _ = alti_vectors(layer)
    return vectors


def _literal_zeroing(loaded, ids, parts, layer_index: int, token: int) -> np.ndarray:
    """Layer ``layer_index``'s output with token ``token``'s value vector zeroed, one unbatched forward pass."""
    seen = {}

    def zero(module, args, output):
        output = output.clone()
        width = output.shape[-1]
        start = 2 * width // 3 if parts[layer_index].value_slice is not None else 0
        output[0, token, start:] = 0.0
        return output

    def keep(module, args, output):
        seen["out"] = (output[0] if isinstance(output, tuple) else output)[0].double().numpy()

    chosen = parts[layer_index]
    handles = [chosen.value.register_forward_hook(zero), chosen.block.register_forward_hook(keep)]
    try:
        with torch.no_grad():
            loaded.model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    return seen["out"]


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_value_zeroing_is_literally_zeroing_and_rerunning(captures, arch):
    loaded, capture = captures[arch]
    matrices = graph_matrices("value-zeroing", loaded, capture=capture)
    parts = layer_modules(loaded.model)
    ids = torch.tensor([capture_attention(TEXT, loaded).input_ids])
    n = capture.n_tokens
    for index, layer in enumerate(capture.layers):
        distances = np.zeros((n, n))
        for token in range(n):
            changed = _literal_zeroing(loaded, ids, parts, index, token)
            for i in range(n):
                cos = changed[i] @ layer.output[i] / np.linalg.norm(changed[i]) / np.linalg.norm(layer.output[i])
                distances[i, token] = max(0.0, 1.0 - cos)
        if capture.is_causal:
            assert np.all(np.triu(distances, 1) < 1e-6)  # causality: later tokens change nothing
            distances = np.tril(distances)
        assert np.allclose(matrices[index], _rownorm(distances), atol=2e-3)


def test_value_zeroing_chunks_give_the_same_matrices(captures):
    from attnflow.mixing.value_zeroing import value_zeroing_matrices

    _, capture = captures["distilbert"]
    assert np.allclose(value_zeroing_matrices(capture, batch_size=3), value_zeroing_matrices(capture), atol=1e-5)
    with pytest.raises(AttnflowError, match="batch_size"):
        value_zeroing_matrices(capture, batch_size=1)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "sva"])
def test_globenc_is_refused_for_pre_ln_blocks_naming_why(captures, arch):
    loaded, capture = captures[arch]
    with pytest.raises(AttnflowError, match="post-LN encoders"):
        graph_matrices("globenc", loaded, capture=capture)


def test_every_graph_gives_row_stochastic_matrices(captures):
    loaded, capture = captures["roberta"]
    for name in available_graphs():
        matrices = graph_matrices(name, loaded, capture=capture)
        assert np.all(matrices >= 0) and np.allclose(matrices.sum(-1), 1.0)
        assert get_graph(name).reference and get_graph(name).residual and get_graph(name).normalisation


def test_unknown_graph_lists_the_registered_ones():
    names = "attention, norm, globenc, globenc-rownorm, alti, value-zeroing"
    with pytest.raises(AttnflowError, match=f"available: {names}"):
        get_graph("shapley")
