"""Cohort scale: hospital DICOM exports in, the right series chosen, runs on Dask, L3 slices out.

Not part of the Slicer module (nothing in ``L3Locator/`` outside this package imports it):
it needs the optional extra ``cohort`` (``pip install l3locator[cohort]``: pydicom and
dask[distributed]); each module imports those lazily and says how to install them.

- ``dicom_tree``: walk a tree, read DICOM headers only, group by study and series.
- ``series_choice``: per study, the series that suits L3, with the reason for every series.
- ``tasks``: one unit of work (a volume file or one DICOM series) -> one results row.
- ``slice_export``: the L3 slice (and neighbours) as NIfTI, DICOM and PNG.
- ``dask_runner``: the same tasks on a Dask cluster, rows streamed back to one writer.
- ``synthetic_export``: a PACS-like synthetic DICOM export for tests and benchmarks.
"""

from .deps import require_dask, require_pydicom

__all__ = ["require_dask", "require_pydicom"]
