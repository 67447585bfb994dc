"""Running the CLI as a user would, and comparing what it prints with what the docs show.

A documented table is a rounded picture of float32 arithmetic. Another CPU (oneDNN's
SSE4.1, AVX2 or AVX-512 kernels sum in other orders) can move a value across a rounding
edge: ``0.2645`` prints as ``0.264`` on one machine and ``0.265`` on another, and a bar
gains or loses one eighth of a cell. So printed numbers are compared at their printed
precision, within one unit of the last printed digit, bars within one eighth of a cell,
and everything else as text.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

#: Variables that choose the CPU kernels and thread counts: a subprocess must see the same
#: ones as the test run (``make test-isa`` sets them to shake out rounding assumptions).
KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                    "NUMBA_NUM_THREADS")

_BAR_EIGHTHS = {"█": 8, "▉": 7, "▊": 6, "▋": 5, "▌": 4, "▍": 3, "▎": 2, "▏": 1}


def cli_env(columns: int, **extra: str) -> dict[str, str]:
    """A clean environment for ``python -m attnflow``: offline, ``columns`` wide, the test run's CPU kernels."""
    env = {"COLUMNS": str(columns), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin"}
    env.update({name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ})
    env.update(extra)
    return env


def run_attnflow(args: list[str], columns: int, **kwargs) -> str:
    """What ``attnflow ARGS`` prints, each line stripped at the right; fails the test on a non-zero exit."""
    run = subprocess.run([sys.executable, "-m", "attnflow", *args], capture_output=True, text=True,
                         env=cli_env(columns), timeout=600, **kwargs)
    assert run.returncode == 0, run.stderr
    return "\n".join(line.rstrip() for line in run.stdout.splitlines()).strip()


_NUMBER = re.compile(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?")
_BAR = re.compile(r"[█▉▊▋▌▍▎▏]+")


def _split(line: str) -> tuple[str, list[str], dict[int, int]]:
    """The line's text (numbers marked, bars blanked, whitespace collapsed), its numbers, and its bars.

    Bars are keyed by the column they start at, as eighths of a cell, so that a bar that is empty
    on one machine and one eighth long on another still lines up.
    """
    bars = {match.start(): sum(_BAR_EIGHTHS[glyph] for glyph in match.group()) for match in _BAR.finditer(line)}
    numbers = _NUMBER.findall(line)
    text = " ".join(_NUMBER.sub("\0", _BAR.sub(" ", line)).split())
    return text, numbers, bars


def _same_number(a: str, b: str) -> bool:
    """Equal within one unit of the last printed digit (of the mantissa, relative, for ``1.5e-05``)."""
    if a == b:
        return True
    if "e" in a.lower() or "e" in b.lower():
        digits = len(a.lower().split("e")[0].partition(".")[2])
        return abs(float(a) - float(b)) <= 1.0000001 * 10.0**-digits * max(abs(float(a)), abs(float(b)))
    digits = max(len(a.partition(".")[2]), len(b.partition(".")[2]))
    return abs(float(a) - float(b)) <= 1.0000001 * 10.0**-digits


def printouts_differ(shown: str, documented: str) -> str | None:
    """Where ``shown`` differs from ``documented`` beyond rounding at the printed precision, else ``None``.

    >>> printouts_differ("a 0.264 █████████▉", "a 0.265 ██████████") is None
    True
    >>> printouts_differ("a 0.262 ██████████", "a 0.265 ██████████")
    'line 1: 0.262 against 0.265'
    >>> printouts_differ("a 0.001 ▏ |", "a 0.001   |") is None
    True
    >>> printouts_differ("a 0.265 ████", "b 0.265 ████")
    'line 1: a 0.265 ████ against b 0.265 ████'
    """
    shown_lines, documented_lines = shown.strip().splitlines(), documented.strip().splitlines()
    if len(shown_lines) != len(documented_lines):
        return f"{len(shown_lines)} lines printed against {len(documented_lines)} documented"
    for number, (got, want) in enumerate(zip(shown_lines, documented_lines, strict=True), start=1):
        got_text, got_numbers, got_bars = _split(got)
        want_text, want_numbers, want_bars = _split(want)
        if got_text != want_text:
            return f"line {number}: {got.strip()} against {want.strip()}"
        for a, b in zip(got_numbers, want_numbers, strict=True):
            if not _same_number(a, b):
                return f"line {number}: {a} against {b}"
        for column in sorted(got_bars.keys() | want_bars.keys()):
            if abs(got_bars.get(column, 0) - want_bars.get(column, 0)) > 1:
                return f"line {number}: a bar of {got_bars.get(column, 0)} eighths against {want_bars.get(column, 0)}"
    return None
