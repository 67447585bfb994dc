"""Context-mixing graphs on the bundled ViT (``digits-vit``, pre-LN) and the digits deletion/insertion curves.

The graphs are checked on ViT as on the text models (tests/mixing/test_graphs.py): the
decomposition sums to what the model computed, and value zeroing is literally zeroing one
value vector and rerunning. The curves over a graph are checked against rollout computed
here as a plain matrix product of the graph's matrices, the patches ranked by it and the
model's probabilities read along that order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnflow.capture import load_model
from attnflow.capture.image import capture_image_attention
from attnflow.capture.image_perturb import perturbation_curves
from attnflow.capture.mixing import layer_modules
from attnflow.cli import main
from attnflow.errors import AttnflowError
from attnflow.evaluate.image_faithfulness import image_faithfulness, patch_order
from attnflow.mixing import capture_mixing, graph_matrices
from attnflow.mixing.decompose import attention_vectors
from attnflow.tasks.digits import digits_test_set
from tests.mixing.test_graphs import _rownorm_bounds, _zeroing_errors
from tests.tolerances import assert_within, float32_sum_bound, model_float32_bound


@pytest.fixture(scope="module")
def vit():
    """The bundled digits ViT, three test digits, and the first one's image capture and mixing capture."""
    loaded = load_model("digits-vit")
    images, labels = digits_test_set(3)
    captured = capture_image_attention(images[0], loaded)
    return loaded, list(images), list(labels), captured, capture_mixing(loaded, inputs={"pixel_values":
                                                                                          captured.pixel_values})


def test_the_vit_decomposition_sums_to_what_the_model_computed(vit):
    loaded, _, _, captured, mixing = vit
    assert mixing.layout == "pre-ln" and mixing.model_type == "vit"
    np.testing.assert_allclose(mixing.attentions, captured.attentions, rtol=0,
                               atol=model_float32_bound(loaded.model.config))  # two float32 runs
    for layer in mixing.layers:
        total = attention_vectors(layer).sum(axis=1) + layer.b_o
        # the model's float32 sums (n keys, D output-projection terms, bias, residual) over the terms' magnitudes
        n, width = layer.x.shape
        magnitudes = np.einsum("hij,hjd,hdk->ik", layer.weights, np.abs(layer.head_values), np.abs(layer.w_o))
        scale = (magnitudes + np.abs(layer.x) + np.abs(layer.b_o)).max()
        np.testing.assert_allclose(total, layer.block_output, rtol=0, atol=float32_sum_bound(n + width + 2,
                                                                                            scale=scale))


def test_vit_value_zeroing_is_literally_zeroing_and_rerunning(vit):
    loaded, _, _, captured, mixing = vit
    matrices = graph_matrices("value-zeroing", loaded, capture=mixing)
    parts = layer_modules(loaded.model)
    n = mixing.n_tokens
    for index, layer in enumerate(mixing.layers):
        distances = np.zeros((n, n))
        for token in range(n):
            seen = {}

            def zero(module, args, output, token=token):
                output = output.clone()
                output[0, token] = 0.0
                return output

            def keep(module, args, output, seen=seen):
                seen["out"] = (output[0] if isinstance(output, tuple) else output)[0].double().numpy()

            handles = [parts[index].value.register_forward_hook(zero), parts[index].block.register_forward_hook(keep)]
            try:
                with torch.no_grad():
                    loaded.model(pixel_values=captured.pixel_values)
            finally:
                for handle in handles:
                    handle.remove()
            changed = seen["out"]
            for i in range(n):
                cos = changed[i] @ layer.output[i] / np.linalg.norm(changed[i]) / np.linalg.norm(layer.output[i])
                distances[i, token] = max(0.0, 1.0 - cos)
        errors = _zeroing_errors(loaded.model.config, layer.output, distances)  # two float32 runs' cosines
        assert_within(matrices[index], distances / distances.sum(-1, keepdims=True), _rownorm_bounds(errors, distances),
                      err_msg=str(index))


@pytest.fixture(scope="module")
def curves(vit):
    loaded, images, labels, _, _ = vit
    return image_faithfulness(images, loaded, ("rollout", "flow"), graphs=["attention", "alti", "norm"],
                              labels=labels)


def test_curves_over_a_graph_follow_its_rollout(vit, curves):
    """alti/rollout's deletion and insertion curves: the patches ranked by ``e_cls M_L ... M_1`` of ALTI's own
    matrices (residual inside, none added), the model's probability of the predicted class along that order."""
    loaded, images, _, _, _ = vit
    assert curves.methods == ["rollout", "flow", "alti/rollout", "alti/flow", "norm/rollout", "norm/flow"]
    assert set(curves.summary()) == {*curves.methods, "random"}
    for index, image in enumerate(images):
        captured = capture_image_attention(image, loaded)
        matrices = graph_matrices("alti", loaded, capture=capture_mixing(
            loaded, inputs={"pixel_values": captured.pixel_values}))
        product = np.eye(matrices.shape[-1])
        for layer in matrices:
            product = layer @ product
        grid = product[0][list(captured.patch_positions)].reshape(captured.grid)
        with torch.no_grad():
            predicted = int(loaded.model(pixel_values=captured.pixel_values).logits[0].argmax())
        fractions, down, up = perturbation_curves(loaded, captured.pixel_values, captured.grid, patch_order(grid),
                                                  predicted)
        bound = model_float32_bound(loaded.model.config)  # probabilities from two float32 runs of the model
        np.testing.assert_allclose(curves.deletion_curves["alti/rollout"][index], down, rtol=0, atol=bound)
        np.testing.assert_allclose(curves.insertion_curves["alti/rollout"][index], up, rtol=0, atol=bound)


def test_the_attention_rows_do_not_change_with_graphs(vit, curves):
    loaded, images, labels, _, _ = vit
    plain = image_faithfulness(images, loaded, ("rollout",), labels=labels)
    np.testing.assert_array_equal(plain.deletion_auc["rollout"], curves.deletion_auc["rollout"])
    np.testing.assert_array_equal(plain.deletion_auc["random"], curves.deletion_auc["random"])


def test_globenc_residual_and_gradient_methods_are_refused_before_any_image(vit):
    loaded, images, _, _, _ = vit
    with pytest.raises(AttnflowError, match=r"'globenc' graph is not defined for vit \(pre-ln blocks\)"):
        image_faithfulness(images, loaded, ("rollout",), graphs=["globenc"])
    with pytest.raises(AttnflowError, match="runs on the attention graph only"):
        image_faithfulness(images, loaded, ("grad-rollout",), graphs=["alti"])
    with pytest.raises(AttnflowError, match="already contains the residual stream"):
        image_faithfulness(images, loaded, ("rollout",), graphs=["alti"], residual=0.3)


def test_the_cli_evaluates_digits_over_graphs(tmp_path, capsys):
    out = tmp_path / "digits"
    status = main(["evaluate", "--images", "digits", "--n", "3", "--graph", "attention", "--graph", "alti",
                   "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert set(summary) == {"rollout", "flow", "alti/rollout", "alti/flow", "random"}  # no grad-rollout by default
    assert "| alti/flow |" in printed
    status = main(["evaluate", "--images", "digits", "--n", "3", "--graph", "globenc", "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert status != 0 and "not defined for vit" in err and "Traceback" not in err
    status = main(["evaluate", "--images", "digits", "--graph", "alti", "--residual", "0.3", "--out", str(tmp_path)])
    assert status != 0 and "already contains the" in capsys.readouterr().err
