"""Options several commands share, each declared once with its one check (taken from the registries).

A command names the option's type here and gives its own default, e.g.
``residual: Residual = None``. Every check runs while the command line is parsed, so
a bad value is a usage error (exit 2, naming the option) before any model loads,
whichever command it is given to (``tests/test_options.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..bundled import bundled_names
from ..methods import available_methods
from ..methods.attribution import available_attributions
from ..mixing.registry import available_graphs
from .common import (
    CLI_HEAD_FUSIONS,
    HEAD_FUSION_HELP,
    OVERWRITE_HELP,
    check_method_option,
    check_output_option,
    check_target_option,
    choice,
    number_range,
)

#: ``--residual``: the residual weight of the attention graph, in [0, 1].
Residual = Annotated[
    float | None,
    typer.Option(
        help="Residual weight r in (1-r)*A + r*I, for the attention graph [default: 0.5].",
        callback=number_range(0, 1),
    ),
]

#: ``--head-fusion``: how heads are combined (graph.py's fusions, and head importance).
HeadFusion = Annotated[str, typer.Option(help=HEAD_FUSION_HELP, callback=choice(*CLI_HEAD_FUSIONS))]

#: ``--graph``, repeatable: the registered token-to-token graphs (attnflow.mixing).
Graphs = Annotated[
    list[str] | None,
    typer.Option(
        "--graph",
        help="Token-to-token graph the methods run over; repeat for several (results named GRAPH/METHOD, "
        f"attention keeps plain names). Available: {', '.join(available_graphs())} [default: attention].",
        callback=choice(*available_graphs()),
    ),
]

#: ``--output``: the output position explained (its range is checked against each text).
OutputPosition = Annotated[
    str | None,
    typer.Option(
        help="Output to explain: cls, last, mean or a token index [default: cls, last for decoders].",
        callback=check_output_option,
    ),
]

#: ``--overwrite``: replace output files attnflow did not write.
Overwrite = Annotated[bool, typer.Option(help=OVERWRITE_HELP)]

#: ``--truncate``: cut texts longer than the model's maximum.
Truncate = Annotated[bool, typer.Option(help="Cut texts longer than the model's maximum.")]

#: ``--trust-remote-code``: let a model folder's own Python code run.
TrustRemoteCode = Annotated[bool, typer.Option(help="Allow the model folder's own Python code to run.")]


def method_option(default: str, note: str = "") -> Any:
    """``--method``, repeatable, checked against both method registries; ``default`` and ``note`` are the command's.

    Examples
    --------
    >>> method_option("raw, rollout").__metadata__[0].callback is check_method_option
    True
    """
    return Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help=f"Method; repeat for several. Available: {', '.join(available_methods())}; attribution methods "
            f"(the input, no layers): {', '.join(available_attributions())}.{' ' + note if note else ''} "
            f"[default: {default}]",
            callback=check_method_option,
            show_default=False,
        ),
    ]


def model_option(default: str, note: str = "") -> Any:
    """``--model`` (``-m``): a bundled name, a folder or a cached Hugging Face id; ``default`` is the command's.

    Examples
    --------
    >>> model_option("minilm").__metadata__[0].help[:40]
    'Bundled name (minilm, sva, digits-vit, r'
    """
    return Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help=f"{note + ' ' if note else ''}Bundled name ({bundled_names()}), folder or cached HF id "
            f"[default: {default}].",
        ),
    ]


def target_option(subject: str, *, encoder_decoder: bool = False) -> Any:
    """``--target`` (``-t``): what the scores are of; ``subject`` says what the command measures with it.

    ``encoder_decoder``: the command takes the target of an encoder-decoder model too.

    Examples
    --------
    >>> target_option("What grad-rollout explains").__metadata__[0].help[:37]
    'What grad-rollout explains: predicted'
    """
    seq2seq = "; for an encoder-decoder model next, predicted or a vocabulary token" if encoder_decoder else ""
    return Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help=f"{subject}: predicted, a class index, a label name, gold (each example's label), "
            f"'A|B' (causal LMs: log p(A) - log p(B)), 'cosine:REFERENCE TEXT' or norm{seq2seq} "
            f"[default: predicted; norm for bare encoders{'; next for encoder-decoder' if encoder_decoder else ''}].",
            callback=check_target_option,
        ),
    ]
