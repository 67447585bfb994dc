"""Image explanations in bfloat16 and float16 against float32, on the bundled digits-vit.

    python benchmarks/image_precision.py                    # the first 20 held-out digits (about 20 s on 2 cores)
    python benchmarks/image_precision.py --json docs/results/image-precision.json

For each dtype: ``attnflow.explain_image(digit, load_model("digits-vit", dtype=...))``
with raw attention, rollout, flow and grad-rollout (the predicted class), against
the same in float32. Reported per method: the largest score difference relative to
the largest float32 score of that method (over all layers and digits); the largest
row correction (``|row sum - 1|`` renormalised away in float64); the least Spearman
correlation of one layer's scores (layers whose float32 scores are constant are
skipped); and how many digits keep the float32 prediction.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

import numpy as np

METHODS = ("raw", "rollout", "flow", "grad-rollout")


def measure(count: int) -> list[dict]:
    from scipy.stats import spearmanr

    from attnflow.capture import load_model
    from attnflow.explainers.image import explain_image
    from attnflow.tasks.digits import digits_test_set

    images, _ = digits_test_set(count)
    reference_model = load_model("digits-vit")
    references = [explain_image(image, reference_model, methods=METHODS) for image in images]
    rows = []
    for dtype in ("bfloat16", "float16"):
        half = load_model("digits-vit", dtype=dtype)
        worst = dict.fromkeys(METHODS, 0.0)
        spearman, correction, same_class = 1.0, 0.0, 0
        for image, reference in zip(images, references, strict=True):
            got = explain_image(image, half, methods=METHODS)
            correction = max(correction, got.captured.row_correction)
            same_class += int(got.target["class"] == reference.target["class"])
            for method in METHODS:
                want, have = reference.scores[method], got.scores[method]
                worst[method] = max(worst[method], float(np.abs(have - want).max() / np.abs(want).max()))
                for layer in range(want.shape[0]):
                    if np.ptp(want[layer]) > 0:
                        spearman = min(spearman, float(spearmanr(want[layer], have[layer])[0]))
        rows.append({"dtype": dtype, "digits": len(images), "row_correction": correction, "relative": worst,
                     "least_spearman": spearman, "same_prediction": same_class})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=20, help="how many held-out digits (default 20)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = measure(args.digits)
    print("| dtype | largest row correction | " + " | ".join(METHODS) + " | least Spearman per layer | same class |")
    print("|---" * (len(METHODS) + 4) + "|")
    for row in rows:
        cells = " | ".join(f"{row['relative'][m]:.3%}".replace("%", " %") for m in METHODS)
        print(f"| {row['dtype']} | {row['row_correction']:.1e} | {cells} | {row['least_spearman']:.3f} | "
              f"{row['same_prediction']} of {row['digits']} |")
    if args.json:
        record = {"command": "python benchmarks/image_precision.py --json " + str(args.json),
                  "date": datetime.date.today().isoformat(), "model": "digits-vit", "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
