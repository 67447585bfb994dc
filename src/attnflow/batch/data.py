"""The data reader of :func:`attnflow.batch.run_batch`: :mod:`attnflow.data` (kept here for old imports)."""

from ..data import FILE_FORMATS, IMAGE_FORMATS, Dataset, Record, image_files, read_dataset

__all__ = ["FILE_FORMATS", "IMAGE_FORMATS", "Dataset", "Record", "image_files", "read_dataset"]
