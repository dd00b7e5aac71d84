"""The numbers that several modules (and every backend) must agree on, each defined once.

This module imports nothing, so every other module can take its numbers from here and the
dependencies flow one way.  A number that only one spec uses lives in that spec's module
(``kernels/cpu/cmstate`` for cm's slots, ``neural/config`` for the neural head).
"""

CODER_PRECISION = 24        # every table is coded at total 2**24 (rANS, see nacc.coder)
DEFAULT_VOCAB = 1024        # token ids 0..1023: commaVQ's 10-bit codes
COMMAVQ_FRAME = (8, 16)     # a commaVQ frame: 8 rows of 16 tokens
COMMAVQ_FRAME_TOKENS = COMMAVQ_FRAME[0] * COMMAVQ_FRAME[1]  # a (T, 128) array is 8x16 frames
