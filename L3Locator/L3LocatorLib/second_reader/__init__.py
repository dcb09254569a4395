"""A second reader: count the vertebrae like a radiologist, without a network.

Works in 3-D on the CT brought to patient axes (``patient_grid``: array ``[s, r, a]``,
superior -> inferior, right -> left, anterior -> posterior), on a grid of about 2 mm
(block mean and block max of the voxels) inside a box around the spine track that
``projection.project`` already found. Every step is numpy / scipy.ndimage:

1. **Body track.** On a thin mid-sagittal slab (right-left mean within
   ``SecondReaderConfig.slab_half_mm`` of the track) the posterior wall of the vertebral
   bodies is where bright bone in front meets the dark spinal canal behind, with the
   bright vertebral arch behind that. A Viterbi path follows the wall superior ->
   inferior; rows where that pattern is absent end the track.
2. **Discs.** Along the body column just in front of the wall, a disc is a narrow dark
   gap between two bright endplates (narrow: the dim middle of an osteoporotic body is
   a wider dip). A chain of gaps with plausible spacing (dynamic programming) splits the
   column into vertebral bodies.
3. **Ribs.** Bone lateral to the bodies, connected in 3-D, whose medial end lies beside
   one body behind its posterior wall (the costovertebral and costotransverse joints)
   and which reaches farther out than any transverse process: a rib. The lowest body
   with such a rib on either side is the last rib-bearing vertebra.
4. **Sacrum and iliac crests.** The sacrum begins where bone in front of the canal
   spreads sideways from the midline beyond any lumbar body (the sacral alae) and
   stays that wide; the disc just above it is L5-S1. The iliac crests are the top of
   the bone far lateral in the pelvis (reported, not counted with).
5. **Count.** Bodies below the last rib-bearing one are L1, L2, ...; bodies above the
   sacrum are L5, L4, ... upwards. A count is only made from an anchor that is in view
   and joined to L3 by an unbroken chain of discs; otherwise the reading says it
   cannot count, never a guess.

S positions are RAS S in mm (superior positive), like ``L3Result.s_mm``.
"""

from .count import against_network, read_spine, second_read
from .reading import (
    CANNOT_COUNT,
    COUNTED,
    CountedVertebra,
    SecondReaderConfig,
    SecondReading,
)

__all__ = [
    "CANNOT_COUNT", "COUNTED", "CountedVertebra", "SecondReaderConfig", "SecondReading",
    "against_network", "read_spine", "second_read",
]
