"""Names of the entropy/complexity measures, in one light module.

``pipelines.eeg.kernels`` computes them (and documents each definition); the manifest schema validates
against these names without importing numba, so validating a manifest stays fast.
"""

PER_CHANNEL_MEASURES = (
    "perm_entropy",
    "spectral_entropy_welch",
    "sample_entropy",
    "svd_entropy",
    "higuchi_fd",
    "katz_fd",
    "dfa",
    "lzc_median",
    "lzs_schartner",
    "lzs_schartner_lzw",
)
#: Across channels (no channel axis in their result): the spatio-temporal Lempel-Ziv complexities.
SPATIOTEMPORAL_MEASURES = ("lzc_schartner_st", "lzc_schartner_lzw")
#: All measures.
MEASURES = PER_CHANNEL_MEASURES + SPATIOTEMPORAL_MEASURES
