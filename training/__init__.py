"""Training package of L3Locator: data sources, augmentation, training, evaluation, export.

Run ``python -m training train --data SOURCE --arch PRESET --epochs N --out DIR`` and
``python -m training evaluate --model DIR/<name>.json --data SOURCE``; see ``training.cli``.
"""
