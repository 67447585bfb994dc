"""Whole data sets: explanations of every row into resumable Parquet shards, locally or on Ray.

- :func:`run_batch`: a data set in, a folder of Parquet shards (one row per example x method x layer),
  ``manifest.json`` and ``summary.json`` out; resumes where an interrupted run stopped.
- :func:`read_dataset`: JSONL, CSV, Parquet, text files and ``datasets`` folders.
- :func:`read_results`: the rows as a pandas DataFrame; :func:`read_explanation`: one row as an Explanation.
- :func:`evaluation_result`: an evaluating run (``evaluation=``) as one ``EvaluationResult``.

Examples
--------
>>> from attnflow.batch import ENGINES
>>> ENGINES
('local', 'ray')
"""

from ..data import Dataset, Example, read_dataset
from .engines import ENGINES, available_cores, check_address
from .evaluation import evaluation_result
from .runner import BatchResult, model_fingerprint, read_explanation, read_results, run_batch
from .worker import COLUMNS, ShardWorker, WorkSpec

__all__ = [
    "COLUMNS",
    "ENGINES",
    "BatchResult",
    "Dataset",
    "Example",
    "ShardWorker",
    "WorkSpec",
    "available_cores",
    "check_address",
    "evaluation_result",
    "model_fingerprint",
    "read_dataset",
    "read_explanation",
    "read_results",
    "run_batch",
]
