"""Does the blank-out replacement decide the agreement study's result? Two replacements, the same sentences.

    python scripts/agreement_blanks.py --n 20 --out docs/results/agreement-blanks.json

Llama's tokenizer has no ``[UNK]`` or ``[MASK]``, so ``attnflow reproduce agreement`` blanks a
token with the space token ``Ġ`` (:data:`attnflow.tasks.agreement.BLANK`). This reruns the
first ``n`` sentences of the study with that replacement and with ``<|endoftext|>``
(:data:`~attnflow.tasks.agreement.OTHER_BLANK`), and writes, per replacement, each method's
top-layer Spearman correlation with blank-out and how often blank-out ranks the subject above
every attractor; and, between the two, the Spearman correlation of the two blank-out
importances of each sentence. ``scripts/doc_tables.py`` renders it in docs/agreement.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from attnflow.tasks.agreement import BLANK, OTHER_BLANK, reproduce_agreement


def compare(n: int, blanks: tuple[str, str] = (BLANK, OTHER_BLANK)) -> dict:
    """Rerun the study's first ``n`` sentences (attention methods, blank-out only) with each blank."""
    runs = {blank: reproduce_agreement(n, graphs=[], cuts=False, ground_truths=["blankout"], blank=blank)
            for blank in blanks}
    per_blank = {}
    for blank, run in runs.items():
        evaluation = run.evaluation
        top = {m: evaluation.correlation("blankout", m)[-1] for m in evaluation.methods}
        per_blank[blank] = {
            "top_layer_correlation": {m: [float(v) if np.isfinite(v) else None for v in pair]
                                      for m, pair in top.items()},
            "subject_first": run.plausibility.get("ground_truths", {}).get("blankout"),
        }
    first, second = (runs[b].evaluation.examples for b in blanks)
    between = []
    for a, b in zip(first, second, strict=True):
        x, y = a.ground_truths["blankout"], b.ground_truths["blankout"]
        keep = np.isfinite(x) & np.isfinite(y)
        between.append(float(spearmanr(x[keep], y[keep]).statistic))
    return {
        "format": "attnflow.agreement-blanks", "version": 1, "n": n, "blanks": list(blanks),
        "command": f"python scripts/agreement_blanks.py --n {n} --out docs/results/agreement-blanks.json",
        "per_blank": per_blank,
        "blankout_between_blanks": {"mean": float(np.mean(between)), "sd": float(np.std(between)),
                                    "per_sentence": between},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="sentences (default 20)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON to write")
    args = parser.parse_args(argv)
    results = compare(args.n)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
