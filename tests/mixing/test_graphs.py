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
from attnflow.capture.mixing import layer_modules
from attnflow.errors import AttnflowError
from attnflow.mixing import available_graphs, capture_mixing, get_graph, graph_matrices
from attnflow.mixing.alti import alti_vectors
from attnflow.mixing.decompose import attention_vectors, layer_norm_scale
from attnflow.mixing.globenc import globenc_vectors
from tests.tolerances import EPS64, assert_within, float32_sum_bound, model_float32_bound

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


def _reference_vectors(loaded, capture, index: int, absolute: bool = False) -> np.ndarray:
    """``T[i, j] = sum_h a^h_ij (a_j W_V^h + b_V^h) W_O^h + [i==j] x_i`` by loops, from the modules' weights.

    ``absolute=True``: the same sums over the magnitudes of every factor, the scale of Higham's
    bound ``|fl(sum) - sum| <= gamma_k * sum |terms|`` for the model's float32 sums.
    """
    parts = layer_modules(loaded.model)[index]
    layer = capture.layers[index]
    w_v, b_v = _weights(parts.value)
    if parts.value_slice is not None:  # GPT-2: the value third of the fused projection
        third = w_v.shape[1] // 3
        w_v, b_v = w_v[:, 2 * third:], b_v[2 * third:]
    w_o, _ = _weights(parts.projection)
    if absolute:
        layer = type(layer)(**{**vars(layer), "attention_input": np.abs(layer.attention_input), "x": np.abs(layer.x)})
        w_v, b_v, w_o = np.abs(w_v), np.abs(b_v), np.abs(w_o)
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


def _rownorm_bound(error: float, m: np.ndarray) -> float:
    """How far ``_rownorm(m)`` moves when each entry of the non-negative ``m`` moves by ``error``:
    ``|d(m_j / S)| <= error / S + m_j * n * error / S^2 <= (n + 1) * error / S``, ``S`` the smallest row sum."""
    return (m.shape[-1] + 1) * error / m.sum(-1).min()


def _rownorm_bounds(errors: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per entry, how far ``_rownorm(m)`` moves when entry ``m_ij`` moves by ``errors[i, j]``:
    ``errors_ij / S_i + m_ij * sum_k errors_ik / S_i^2``."""
    sums = m.sum(-1, keepdims=True)
    return errors / sums + m * errors.sum(-1, keepdims=True) / sums**2


def _bounds(loaded, capture, index: int) -> dict[str, float]:
    """Float32 bounds for layer ``index``'s decomposition against what the model computed.

    - ``sum``: the model's attention output plus residual, ``s_i = sum_j T_i(x_j) + b_O``, is n-term sums
      (over keys) fed to D-term sums (the output projection), a bias and the residual: ``n + D + 2`` terms;
    - ``vector``: one ``T_i(x_j)`` from the model's float32 values against values recomputed in float64 from
      the weights: the value projection's ``D + 1`` terms and the stored value's rounding;
    - ``gain``, ``gain2``: what the first and second layer norms multiply a difference by,
      ``max |gamma| / min sigma`` (1 where there is none);
    - ``y``: the decomposition's output through LN1 (pre-LN: the sum itself) against the model's.
    """
    layer = capture.layers[index]
    magnitudes = _reference_vectors(loaded, capture, index, absolute=True)  # (n, n, D)
    n, width = layer.x.shape
    gain = gain2 = 1.0
    if layer.ln1 is not None:
        gain = np.abs(layer.ln1.gamma).max() / layer_norm_scale(layer.ln1_input, layer.ln1).min()
    if layer.ln2 is not None:
        gain2 = np.abs(layer.ln2.gamma).max() / layer_norm_scale(layer.ln2_input, layer.ln2).min()
    total = float32_sum_bound(n + width + 2, scale=(magnitudes.sum(1) + np.abs(layer.b_o)).max())
    return {
        "sum": total,
        "vector": float32_sum_bound(width + 2, scale=magnitudes.max()),
        "gain": gain,
        "gain2": gain2,
        "y": total * gain + (_layer_norm_bound(layer.ln1_output) if layer.ln1 is not None else 0.0),
    }


def _layer_norm_bound(output: np.ndarray) -> float:
    """A float32 layer norm's own error: its mean and variance are D-term sums; relative to its output's size."""
    return float32_sum_bound(output.shape[-1], scale=np.abs(output).max(), depth=2)


@pytest.mark.parametrize("arch", [*ARCHS, "sva"])
def test_the_decomposition_sums_to_what_the_model_computed(captures, arch):
    loaded, capture = captures[arch]
    np.testing.assert_allclose(capture.attentions, capture_attention(
        TEXT if arch != "sva" else "the keys to the cabinet", loaded).attentions, rtol=0,
        atol=model_float32_bound(loaded.model.config))  # two float32 runs
    for index, layer in enumerate(capture.layers):
        total = attention_vectors(layer).sum(axis=1) + layer.b_o  # float64 sums of the model's float32 values
        bounds = _bounds(loaded, capture, index)
        if capture.layout == "post-ln":
            np.testing.assert_allclose(total, layer.ln1_input, rtol=0, atol=bounds["sum"])
            vectors, y = alti_vectors(layer)
            # sum through LN1 is exact: the sum's difference times LN1's gain, and LN1's own float32 error
            np.testing.assert_allclose(y, layer.ln1_output, rtol=0, atol=bounds["y"])
        else:
            np.testing.assert_allclose(total, layer.block_output, rtol=0, atol=bounds["sum"])


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
def test_vectors_match_loops_over_heads_from_the_weights(captures, arch):
    loaded, capture = captures[arch]
    for index in range(capture.n_layers):
        np.testing.assert_allclose(attention_vectors(capture.layers[index]), _reference_vectors(loaded, capture, index),
                                   rtol=0, atol=_bounds(loaded, capture, index)["vector"])


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "llama", "sva"])
def test_norm_and_alti_follow_their_definitions(captures, arch):
    loaded, capture = captures[arch]
    norm = graph_matrices("norm", loaded, capture=capture)
    alti = graph_matrices("alti", loaded, capture=capture)
    for index, layer in enumerate(capture.layers):
        vectors = _reference_vectors(loaded, capture, index)
        n, width = vectors.shape[0], vectors.shape[-1]
        bounds = _bounds(loaded, capture, index)
        norms = np.linalg.norm(vectors, axis=-1)  # each moves by at most sqrt(D) times a vector's entries
        np.testing.assert_allclose(norm[index], _rownorm(norms), rtol=0,
                                   atol=_rownorm_bound(np.sqrt(width) * bounds["vector"], norms))
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
        # y: the decomposition's sum against the model's output (see the test above); a part: one vector's
        # difference through LN1; each of the two D-term 1-norms moves by D times its entries' differences
        error = width * (2 * bounds["y"] + bounds["vector"] * bounds["gain"])
        np.testing.assert_allclose(alti[index], _rownorm(expected), rtol=0, atol=_rownorm_bound(error, expected))
        if capture.is_causal:
            assert np.all(np.triu(norm[index], 1) == 0) and np.all(np.triu(alti[index], 1) == 0)


def _globenc_relative_errors(loaded, capture, norms: np.ndarray) -> np.ndarray:
    """``(L,)``: how far, relatively, each layer's ``N_Enc`` entries may move between the library (the model's
    float32 values) and the loops (values recomputed in float64): a vector's difference through both layer
    norms, ``sqrt(D)`` of them in a norm, over the layer's smallest norm."""
    width = capture.layers[0].x.shape[-1]
    errors = []
    for index in range(len(capture.layers)):
        bounds = _bounds(loaded, capture, index)
        errors.append(np.sqrt(width) * bounds["vector"] * bounds["gain"] * bounds["gain2"] / norms[index].min())
    return np.array(errors)


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
    # Every entry is positive: a norm's relative error rho moves a row-normalised entry by 2 rho relatively,
    # and a product's entries (sums of positive paths) by the sum of its factors' relative errors.
    relative = 2 * np.cumsum(_globenc_relative_errors(loaded, capture, norms))
    for index in range(norms.shape[0]):
        product = norms[index] @ product  # full matrix products, not attnflow's vector walk
        rownorm_product = _rownorm(norms[index]) @ rownorm_product
        layer = result.scores["globenc/rollout"][index]
        np.testing.assert_allclose(layer, product[0] / product[0].sum(), rtol=relative[index], atol=0)
        np.testing.assert_allclose(result.scores["globenc-rownorm/rollout"][index], rownorm_product[0],
                                   rtol=relative[index], atol=0)
        np.testing.assert_allclose(result.scores["globenc/raw"][index], _rownorm(norms[index])[0],
                                   rtol=relative[index] - (relative[index - 1] if index else 0.0), atol=0)
    # The aggregations differ: the raw product weighs layers by their norms, the normalised one does not.
    assert np.abs(result.scores["globenc/rollout"][-1] - result.scores["globenc-rownorm/rollout"][-1]).max() > 1e-3
    # flow runs on the row-normalised matrices in both graphs
    np.testing.assert_allclose(result.scores["globenc/flow"], result.scores["globenc-rownorm/flow"], rtol=0, atol=0)


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
        bounds = _bounds(loaded, capture, index)
        error = np.sqrt(layer.x.shape[-1]) * bounds["vector"] * bounds["gain"]  # a norm of D differences
        np.testing.assert_allclose(globenc[index], _rownorm(expected), rtol=0,
                                   atol=_rownorm_bound(error * bounds["gain2"], expected))
        # The shares, plus LN2 of what no token owns (LN1's bias terms and the FFN output), are the layer output.
        shares = globenc_vectors(layer)
        _, y = alti_vectors(layer)
        unowned = (y - attention_vectors_through_ln1(layer).sum(axis=1)) + (layer.ln2_input - layer.ln1_output)
        rest = np.stack([_linear_ln(unowned[i], layer.ln2_input[i], layer.ln2.gamma, layer.ln2.eps) for i in range(n)])
        # what LN2 receives differs from the model's by y's difference; then LN2's gain and its own float32 error
        atol = bounds["y"] * bounds["gain2"] + _layer_norm_bound(layer.output)
        np.testing.assert_allclose(shares.sum(axis=1) + rest + layer.ln2.beta, layer.output, rtol=0, atol=atol)


def attention_vectors_through_ln1(layer):
    vectors, _ = alti_vectors(layer)
    return vectors


def _zeroing_errors(config, output: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Per entry, how far two float32 runs' cosine distances ``d = 1 - cos`` may lie apart.

    The runs' outputs differ by ``delta`` relative to their norms (the model's bound, ``sqrt(D)`` entries);
    ``d`` moves by ``sin(angle) <= sqrt(2 d)`` times the two outputs' ``delta``, plus ``delta^2``, plus the
    float64 cosine's own rounding (a D-term dot product and two norms).
    """
    width = output.shape[-1]
    norms = np.linalg.norm(output, axis=-1)
    delta = np.sqrt(width) * model_float32_bound(config, scale=np.abs(output).max()) / norms.min()
    return np.sqrt(2 * distances) * 2 * delta + delta**2 + 2 * (width + 2) * EPS64


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
        errors = _zeroing_errors(loaded.model.config, layer.output, distances)
        if capture.is_causal:  # causality: later tokens change nothing (the two runs still differ in rounding)
            assert np.all(np.triu(distances, 1) <= np.triu(errors, 1))
            distances, errors = np.tril(distances), np.tril(errors)
        assert_within(matrices[index], _rownorm(distances), _rownorm_bounds(errors, distances), err_msg=str(index))


def test_value_zeroing_chunks_give_the_same_matrices(captures):
    from attnflow.mixing.value_zeroing import (
        DEFAULT_BATCH_SIZE,
        cosine_distances,
        value_zeroing_matrices,
        zeroed_outputs,
    )

    loaded, capture = captures["distilbert"]
    chunked, whole = value_zeroing_matrices(capture, batch_size=3), value_zeroing_matrices(capture)
    original, zeroed = zeroed_outputs(capture, DEFAULT_BATCH_SIZE)
    for index, output in enumerate(original):  # other batch shapes: two float32 runs
        distances = np.clip(cosine_distances(output, zeroed[index]).T, 0.0, None)
        errors = _zeroing_errors(loaded.model.config, output, distances)
        assert_within(chunked[index], whole[index], _rownorm_bounds(errors, distances), err_msg=str(index))
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
