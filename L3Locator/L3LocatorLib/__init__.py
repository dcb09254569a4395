"""L3Locator: find the third lumbar vertebra (L3) in a CT scan.

Pure Python (numpy, scipy, SimpleITK; PaddlePaddle only when a model runs).
Nothing here imports Slicer or Qt, so the same code serves the 3D Slicer
module, the ``l3locator`` command and the ``training`` package.
"""

__version__ = "0.1.0"
