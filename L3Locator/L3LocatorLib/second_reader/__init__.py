"""A second reader: count the vertebrae like a radiologist, without a network.

Works in 3-D on the CT brought to patient axes (``patient_grid``: array ``[s, r, a]``,
superior -> inferior, right -> left, anterior -> posterior), on a grid of about 2 mm
(block mean and block max of the voxels, ``box``) inside a box hung from the back of the
spine (found on the projections' sagittal MIP) around the projections' right-left spine
track. numpy and scipy.ndimage only; about 0.1 s on a 512x512x400 CT.

1. **Body track** (``column``). On a thin mid-sagittal slab the posterior wall of the
   vertebral bodies is where bone in front meets the dark spinal canal behind, with the
   bright vertebral arch behind that. A Viterbi path follows the wall superior ->
   inferior; rows where that pattern is absent end the track.
2. **Discs** (``column``). Along the body column in front of the wall, a disc is a
   narrow dark gap between two bright endplates across the whole depth of the body (the
   basivertebral notch or a hollow-looking middle is not). Chains of gaps with plausible,
   smoothly changing spacing (dynamic programming) split the column into bodies; where the
   spacing breaks, a new chain starts and no count crosses the break.
3. **Ribs** (``anchors``). Thin bone lateral to the bodies, connected in 3-D, whose medial
   end lies beside a body behind its posterior wall (costovertebral and costotransverse
   joints) and which reaches farther out than any transverse process. Each belongs to the
   body whose upper third is nearest its medial end (followed back to the spine at the
   lowest ribs' slope); the rib-bearing bodies are the longest run of consecutive ones.
   The lowest is the last rib-bearing vertebra.
4. **Sacrum and iliac crests** (``anchors``). The lowest run where bone in front of the
   canal spreads sideways beyond any lumbar body and joins the iliac bones (sacral alae
   and sacroiliac joints), confirmed by iliac wings reaching far below it; the chain's
   disc at its top is L5-S1. The crests' S is reported, not counted with.
5. **Count** (``count``). Bodies below the last rib-bearing one are L1, L2, ...; bodies
   above the sacrum are L5, L4, ... upwards. A count is made only from an anchor in view
   and joined to L3 by an unbroken chain of discs, L3 included; otherwise the reading
   says it cannot count, never a guess.

``locate`` runs it beside the network (``safe_read``): its reading is
``L3Result.second_reading``, its words against the network's L3 are the reading's
``verdict`` (``second_read``), and when both anchors agree with each other on an L3 that the
network's answer lies outside, a review reason says what each counted. The anchors that
confirm the network's L3 (``confirming_anchors``) lift the scan-edge flag of that anchor's
end, and a low-confidence answer near a scan edge needs one (``locate``).

S positions are RAS S in mm (superior positive), like ``L3Result.s_mm``.
"""

from .count import against_network, confirming_anchors, read_spine, safe_read, second_read
from .reading import (
    CANNOT_COUNT,
    COUNTED,
    CountedVertebra,
    SecondReaderConfig,
    SecondReading,
)

__all__ = [
    "CANNOT_COUNT", "COUNTED", "CountedVertebra", "SecondReaderConfig", "SecondReading",
    "against_network", "confirming_anchors", "read_spine", "safe_read", "second_read",
]
