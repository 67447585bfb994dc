"""Print where each token's attention-flow cut lies, for the examples in docs/flow.md.

    python scripts/flow_cuts.py

For each input token: its raw top-layer flow to the output, the source bound
min(1, attention it receives in layer 1), what bounds the flow (source, output
or inside) and the cut's capacity between each pair of node layers (0 is the
input; the last column is the arcs into the output).
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EXAMPLES = [
    ("The keys to the cabinet are on the table.", "minilm"),
    ("the keys to the cabinet", "sva"),
]


def main() -> None:
    from attnflow import solve_flow, verify_flow
    from attnflow.capture import capture_attention

    for text, model in EXAMPLES:
        captured = capture_attention(text, model)
        n_layers = captured.attentions.shape[0]
        solution = solve_flow(captured.attentions, outputs=0, layers=-1)
        verify_flow(solution)
        kinds = solution.cut_kinds(n_layers, 0)
        parts = solution.cut_breakdowns(n_layers, 0)
        bound = np.minimum(1.0, solution.capacities[0].sum(axis=0))
        print(f"{model}: {text!r}, output [CLS] (token 0) at layer {n_layers}")
        header = " | ".join(f"{k}\u2192{k + 1}" for k in range(n_layers))
        print(f"| # | token | flow | bound | bounded by | {header} |")
        print("|" + "---|" * (5 + n_layers))
        for j, token in enumerate(captured.tokens):
            cells = " | ".join(f"{x:.3f}" for x in parts[j])
            print(f"| {j} | {token} | {solution.row(n_layers, 0)[j]:.3f} | {bound[j]:.3f} | {kinds[j]} | {cells} |")
        print()


if __name__ == "__main__":
    main()
