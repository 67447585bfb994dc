"""The combined encoder-decoder graph: invariants, and flow and rollout against independent references.

The references here never build the layered graph: networkx gets the *un-layered* graph (one
node per encoder-top source token, cross edges from it into every decoder layer), so agreement
also proves that carrying nodes up with identity edges changes no max-flow value.
"""

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnflow import AttnflowError
from attnflow.methods._flow_reference import edmonds_karp_flow
from attnflow.methods.seq2seq import (
    Seq2SeqGraph,
    seq2seq_flow,
    seq2seq_grad_rollout,
    seq2seq_raw,
    seq2seq_rollout,
)
from tests.helpers import random_attention
from tests.tolerances import EPS64, flow_bound


def random_triple(seed: int, n_enc: int, n_dec: int, ns: int, nt: int, heads: int = 2, sparse: bool = False):
    rng = np.random.default_rng(seed)
    enc = random_attention(rng, n_enc, heads, ns, temperature=float(rng.uniform(0.3, 2)))
    dec = random_attention(rng, n_dec, heads, nt, temperature=float(rng.uniform(0.3, 2)), causal=True)
    logits = rng.normal(size=(n_dec, heads, nt, ns)) / float(rng.uniform(0.3, 2))
    if sparse:  # exact zeros in the cross-attention
        logits = np.where(rng.random(logits.shape) < 0.5, -np.inf, logits)
        logits[..., int(rng.integers(ns))] = 0.0
    cross = np.exp(logits - logits.max(-1, keepdims=True))
    cross /= cross.sum(-1, keepdims=True)
    return enc, dec, cross


def _sizes(enc, dec) -> tuple[int, int]:
    """``(layers, nodes)`` of the unlayered graph: n_enc + 2 n_dec layers over ns + nt tokens."""
    return len(enc) + 2 * len(dec), enc.shape[-1] + dec.shape[-1]


def _walks(enc, dec) -> float:
    """Float64 walks (rollout, row sums) through the graph: each layer an n-term row product."""
    layers, n = _sizes(enc, dec)
    return layers * n * EPS64


def _flows(enc, dec) -> float:
    """Max-flow over the graph's layers * n^2 arcs (and the residual arcs, n per layer)."""
    layers, n = _sizes(enc, dec)
    return flow_bound(layers * (n**2 + n))


def by_hand(enc, dec, cross, r=0.5):
    """Fused, residual-augmented sublayers, written out without the library."""
    ns, nt = enc.shape[-1], dec.shape[-1]
    e = (1 - r) * enc.mean(1) + r * np.eye(ns)
    s = (1 - r) * dec.mean(1) + r * np.eye(nt)
    c = cross.mean(1)
    return e, s, c


def unlayered_flow(enc, dec, cross, layer: int, t: int, r=0.5) -> np.ndarray:
    """Raw max flow into decoder position t after decoder layer ``layer`` on the un-layered graph (networkx)."""
    e, s, c = by_hand(enc, dec, cross, r)
    n_enc, ns, nt = e.shape[0], e.shape[-1], s.shape[-1]
    g = nx.DiGraph()
    for k in range(n_enc):
        for i in range(ns):
            for j in range(ns):
                if e[k, i, j] > 0:
                    g.add_edge(("e", k, j), ("e", k + 1, i), capacity=e[k, i, j])
    for d in range(layer):
        for i in range(nt):
            for j in range(nt):
                if s[d, i, j] > 0:
                    g.add_edge(("d", 2 * d, j), ("d", 2 * d + 1, i), capacity=s[d, i, j])
            g.add_edge(("d", 2 * d + 1, i), ("d", 2 * d + 2, i), capacity=r)
            for j in range(ns):
                if c[d, i, j] > 0:  # straight from the encoder's top layer
                    g.add_edge(("e", n_enc, j), ("d", 2 * d + 2, i), capacity=(1 - r) * c[d, i, j])
    sink = ("d", 2 * layer, t)
    values = []
    for source in [("e", 0, j) for j in range(ns)] + [("d", 0, j) for j in range(nt)]:
        values.append(nx.maximum_flow_value(g, source, sink) if source in g and sink in g else 0.0)
    return np.array(values)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1), n_enc=st.integers(1, 2), n_dec=st.integers(1, 2),
    ns=st.integers(1, 4), nt=st.integers(1, 4), sparse=st.booleans(), r=st.sampled_from([0.5, 0.3, 0.8]),
)
def test_flow_matches_networkx_on_the_unlayered_graph(seed, n_enc, n_dec, ns, nt, sparse, r):
    enc, dec, cross = random_triple(seed, n_enc, n_dec, ns, nt, sparse=sparse)
    raw = seq2seq_flow(enc, dec, cross, residual=r, normalize=False)
    for layer in range(1, n_dec + 1):
        for t in range(nt):
            expected = unlayered_flow(enc, dec, cross, layer, t, r)
            np.testing.assert_allclose(raw[layer - 1, t], expected, rtol=0, atol=_flows(enc, dec))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_enc=st.integers(1, 3), n_dec=st.integers(1, 3),
       ns=st.integers(1, 6), nt=st.integers(1, 6), sparse=st.booleans())
def test_invariants(seed, n_enc, n_dec, ns, nt, sparse):
    enc, dec, cross = random_triple(seed, n_enc, n_dec, ns, nt, sparse=sparse)
    graph = Seq2SeqGraph.from_attentions(enc, dec, cross)
    walks, flows = _walks(enc, dec), _flows(enc, dec)
    np.testing.assert_allclose(graph.capacities.sum(-1), 1.0, rtol=0, atol=walks)  # every graph layer row-stochastic
    roll = seq2seq_rollout(enc, dec, cross)
    np.testing.assert_allclose(roll.sum(-1), 1.0, rtol=0, atol=walks)
    raw_flow = seq2seq_flow(enc, dec, cross, normalize=False)
    assert np.all(raw_flow >= roll - walks - flows)  # rollout is a feasible flow (design §5; rows sum to 1)
    bound = np.minimum(1.0, graph.capacities[0].sum(axis=0))
    assert np.all(raw_flow <= bound + walks + flows) and np.all(raw_flow >= -flows)
    np.testing.assert_allclose(seq2seq_flow(enc, dec, cross).sum(-1), 1.0, rtol=0, atol=walks)  # divided by its sum
    raw = seq2seq_raw(enc, dec, cross)
    np.testing.assert_allclose(raw.sum(-1), 1.0, rtol=0, atol=walks)
    # causality: nothing reaches position t from target positions after it (flow: within the kernel's round-off)
    for t in range(nt):
        assert np.all(roll[:, t, ns + t + 1 :] == 0) and np.all(raw_flow[:, t, ns + t + 1 :] <= flows)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_dec=st.integers(1, 4), r=st.floats(0.05, 0.95))
def test_rollout_source_share_is_fixed_by_the_residual(seed, n_dec, r):
    """Each cross sublayer moves 1 - r of the target side's mass to the source; self-attention keeps it."""
    enc, dec, cross = random_triple(seed, 2, n_dec, 4, 3)
    roll = seq2seq_rollout(enc, dec, cross, residual=r)
    share = roll[:, :, :4].sum(-1)
    expected = 1 - r ** np.arange(1, n_dec + 1)
    np.testing.assert_allclose(share, np.broadcast_to(expected[:, None], share.shape), rtol=0, atol=_walks(enc, dec))


def test_rollout_matches_block_formulas():
    enc, dec, cross = random_triple(3, 2, 2, 5, 4)
    r = 0.5
    e, s, c = by_hand(enc, dec, cross, r)
    r_ss = e[1] @ e[0]
    r_ts, r_tt = np.zeros((4, 5)), np.eye(4)
    for d in range(2):
        r_tt, r_ts = s[d] @ r_tt, s[d] @ r_ts
        r_ts, r_tt = (1 - r) * c[d] @ r_ss + r * r_ts, r * r_tt
        got = seq2seq_rollout(enc, dec, cross)[d]
        np.testing.assert_allclose(got, np.hstack([r_ts, r_tt]), rtol=0, atol=_walks(enc, dec))


def test_flow_through_the_kernel_matches_edmonds_karp():
    enc, dec, cross = random_triple(11, 2, 3, 6, 5)
    fast = seq2seq_flow(enc, dec, cross, normalize=False)
    slow = seq2seq_flow(enc, dec, cross, normalize=False, flow_func=edmonds_karp_flow)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=2 * _flows(enc, dec))  # each solver within the bound


def test_flow_of_one_position_equals_all():
    enc, dec, cross = random_triple(5, 2, 2, 5, 4)
    every = seq2seq_flow(enc, dec, cross)
    one = seq2seq_flow(enc, dec, cross, outputs=-2)
    np.testing.assert_allclose(one[:, 2], every[:, 2], rtol=0, atol=_walks(enc, dec))  # normalised: sums
    assert np.isnan(one[:, 0]).all()


def test_grad_rollout_matches_rules_written_out():
    rng = np.random.default_rng(0)
    enc, dec, cross = random_triple(7, 2, 2, 4, 3)
    grads = tuple(rng.normal(size=a.shape) for a in (enc, dec, cross))
    fused = [np.maximum(g * a, 0).mean(1) for g, a in zip(grads, (enc, dec, cross), strict=True)]
    r_ss = np.eye(4)
    for layer in fused[0]:
        r_ss = r_ss + layer @ r_ss
    r_tt, r_ts = np.eye(3), np.zeros((3, 4))
    got = seq2seq_grad_rollout(enc, dec, cross, grads)
    for d in range(2):
        r_tt, r_ts = r_tt + fused[1][d] @ r_tt, r_ts + fused[1][d] @ r_ts
        r_ts = r_ts + fused[2][d] @ r_ss
        # unnormalised: relative to the entries' size (R >= I grows with the layers)
        np.testing.assert_allclose(got[d], np.hstack([r_ts, r_tt]), rtol=0,
                                   atol=_walks(enc, dec) * np.abs(got[d]).max())


def test_head_fusion_max_renormalises():
    enc, dec, cross = random_triple(2, 1, 2, 4, 3, heads=3)
    graph = Seq2SeqGraph.from_attentions(enc, dec, cross, head_fusion="max")
    np.testing.assert_allclose(graph.capacities.sum(-1), 1.0, rtol=0, atol=_walks(enc, dec))
    assert np.all(seq2seq_flow(enc, dec, cross, head_fusion="min") >= 0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e, d, c: (e, d, c[..., :-1]), "cross"),
        (lambda e, d, c: (e, d, c * 2), "sum to 1"),
        (lambda e, d, c: (e, np.full_like(d, 1 / d.shape[-1]), c), "causal"),
        (lambda e, d, c: (e, d, c[:1]), "decoder layer"),
    ],
)
def test_bad_input_is_one_clear_error(change, message):
    enc, dec, cross = change(*random_triple(1, 1, 2, 3, 3))
    with pytest.raises(AttnflowError, match=message):
        seq2seq_rollout(enc, dec, cross)


def test_bad_options():
    enc, dec, cross = random_triple(1, 1, 1, 3, 3)
    with pytest.raises(AttnflowError, match="head_fusion"):
        Seq2SeqGraph.from_attentions(enc, dec, cross, head_fusion=np.ones((1, 2)))
    with pytest.raises(AttnflowError, match="decoder positions"):
        seq2seq_flow(enc, dec, cross, outputs=7)
    with pytest.raises(AttnflowError, match="encoder, decoder, cross"):
        seq2seq_grad_rollout(enc, dec, cross, (enc, dec))


def test_grad_rollout_checks_its_attentions_as_the_graph_does():
    """Once a bare IndexError (layer counts) and silently accepted (a non-causal decoder)."""
    enc, dec, cross = random_triple(1, 1, 2, 3, 3)
    grads = (np.ones_like(enc), np.ones_like(dec), np.ones_like(cross))
    with pytest.raises(AttnflowError, match="decoder layer"):
        seq2seq_grad_rollout(enc, dec, cross[:1], (grads[0], grads[1], grads[2][:1]))
    full = np.full_like(dec, 1 / dec.shape[-1])
    with pytest.raises(AttnflowError, match="causal"):
        seq2seq_grad_rollout(enc, full, cross, grads)
