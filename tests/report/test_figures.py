"""Static figures: PNG, SVG and PDF for papers, the graph only when there is attention."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from attnflow import AttnflowError, Explanation
from attnflow.report.figures import (
    figure_bytes,
    figure_paths,
    plot_attention_graph,
    plot_heatmap,
    render_figures,
    write_figures,
)
from tests.report.conftest import XSS_TOKENS


def test_heatmap_has_a_panel_per_method(toy_data):
    fig = plot_heatmap(toy_data)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles == ["raw", "rollout", "flow"]
    panel = fig.axes[0]
    assert [label.get_text() for label in panel.get_xticklabels()] == toy_data.tokens
    assert len(panel.get_yticklabels()) == toy_data.n_layers


def test_graph_highlights_the_chosen_output(toy_data):
    fig = plot_attention_graph(toy_data, output=3, layer=2, threshold=0.2, method="rollout")
    ax = fig.axes[0]
    assert ax.get_title(loc="left") == "Attention graph: route into token 3 “are” at layer 2"
    assert [label.get_text() for label in ax.get_yticklabels()][:3] == ["input", "layer 1", "layer 2"]
    with pytest.raises(AttnflowError, match="'layer' parameter"):
        plot_attention_graph(toy_data, layer=9)
    with pytest.raises(AttnflowError, match="'output' parameter"):
        plot_attention_graph(toy_data, output=17)


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_formats(toy_data, fmt, magic):
    assert figure_bytes(plot_attention_graph(toy_data), fmt).startswith(magic)


def test_svg_is_well_formed_with_hostile_tokens(xss_data):
    for content in render_figures(xss_data, "svg").values():
        root = ET.fromstring(content)
        names = {element.tag.rsplit("}", 1)[-1] for element in root.iter()}
        assert "script" not in names and "foreignObject" not in names
        for element in root.iter():  # only matplotlib's own embedded rasters (the colour bar), never a link
            links = [v for k, v in element.attrib.items() if k.endswith("href") and not v.startswith("#")]
            assert all(v.startswith("data:image/png;base64,") for v in links), links
        assert not any(k.startswith("on") for element in root.iter() for k in element.attrib)
    text = content.decode("utf-8")
    assert "plain" in text  # tokens stay text (svg.fonttype none), escaped by the XML writer
    assert "<script>" not in text and XSS_TOKENS[0] not in text


def test_write_figures_names_and_explanations(tmp_path, toy_data):
    written = write_figures(toy_data, tmp_path / "fig.svg", output=2)
    assert [p.name for p in written] == ["fig-heatmap.svg", "fig-graph.svg"]
    e = Explanation(tokens=["a", "b"], scores={"rollout": np.array([[0.7, 0.3]])}, output=0)
    assert [p.name for p in write_figures(e, tmp_path / "e.png")] == ["e-heatmap.png"]
    with pytest.raises(AttnflowError, match="must end in"):
        figure_paths(tmp_path / "fig.jpeg")
    with pytest.raises(AttnflowError, match="format"):
        figure_bytes(plot_heatmap(e), "gif")


def test_missing_matplotlib_gives_the_install_command(toy_data, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(AttnflowError, match="pip install matplotlib"):
        plot_heatmap(toy_data)
