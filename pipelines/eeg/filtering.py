"""Band-pass and notch as ONE zero-phase FIR filter, applied in one FFT pass over the recording.

The design is MNE's, unchanged: the band-pass kernel is the one ``raw.filter(l_freq, h_freq)`` builds and the
notch kernel the one ``raw.notch_filter(freqs)`` builds (``mne.filter.create_filter`` with MNE's defaults:
firwin design, Hamming window, zero phase, automatic lengths and transition bands; the notch stop bands are
``f ± f/400 ± 0.5`` Hz as in ``mne.filter.notch_filter``). Both are symmetric (zero phase), so filtering with one
then the other equals filtering once with their convolution. MNE pads each pass with an odd reflection about the
end samples (``reflect_limited``); a symmetric kernel keeps an odd-reflected signal odd-reflected about its
filtered end sample, so one pass over the odd-reflected recording with the combined kernel gives MNE's two
passes' values at the edges too. Equal to MNE's sequential ``raw.filter`` then ``raw.notch_filter`` within
``SEQUENTIAL_RTOL`` of the channel's SD (rounding of the FFTs; tests/eeg/test_filtering.py), at about 40 % of
their cost (one overlap-add pass instead of two, over blocks of channels).

Cases MNE handles differently are left to MNE (:func:`combined_filter_applies` says why): a recording split by
``edge``/``bad_acq_skip`` annotations (MNE filters each piece on its own) and a recording shorter than the
combined kernel.
"""

from __future__ import annotations

import numpy as np

#: Largest difference from MNE's sequential band-pass then notch, relative to the channel's SD (FFT rounding;
#: measured <= 5e-15 on 64-channel recordings).
SEQUENTIAL_RTOL = 1e-12

# Annotations MNE's Raw.filter filters between (its ``skip_by_annotation`` default).
_MNE_SKIP_ANNOTATIONS = ("edge", "bad_acq_skip")

# Channels filtered per FFT block: bounds the pass's extra memory to a few channels' length.
_CHANNELS_PER_BLOCK = 4

CONVENTION = (
    "band-pass and notch as one zero-phase FIR: MNE's firwin band-pass kernel (raw.filter defaults) convolved "
    "with MNE's firwin notch kernel (raw.notch_filter defaults), applied once by overlap-add FFT to the "
    "recording padded by odd reflection (MNE's reflect_limited); equals MNE's two passes within "
    f"{SEQUENTIAL_RTOL:g} of each channel's SD"
)


def band_pass_and_notch_kernel(sfreq: float, l_freq: float, h_freq: float, notch_hz) -> np.ndarray:
    """The combined zero-phase kernel (odd length, symmetric): MNE's band-pass kernel convolved with MNE's
    notch kernel for ``notch_hz`` (the same designs ``raw.filter`` and ``raw.notch_filter`` make)."""
    import mne

    band = mne.filter.create_filter(None, sfreq, l_freq, h_freq, verbose="error")
    freqs = np.atleast_1d(np.asarray(notch_hz, dtype=float))
    kernel = band if freqs.size == 0 else np.convolve(band, _notch_kernel(sfreq, freqs))
    return (kernel + kernel[::-1]) / 2.0  # symmetric up to rounding; made exactly so (zero phase at the edges)


def _notch_kernel(sfreq: float, freqs: np.ndarray) -> np.ndarray:
    """MNE's notch kernel for ``freqs``: the call ``mne.filter.notch_filter`` makes (band-stop, defaults)."""
    import mne

    half_width = freqs / 200.0 / 2.0  # MNE's default notch width f / 200
    transition_half = 0.5  # MNE's default notch transition band (1 Hz), half on each side
    return mne.filter.create_filter(
        None,
        sfreq,
        list(freqs + half_width + transition_half),  # l_freq > h_freq: band-stop, as notch_filter calls it
        list(freqs - half_width - transition_half),
        l_trans_bandwidth=transition_half,
        h_trans_bandwidth=transition_half,
        verbose="error",
    )


def combined_filter_applies(raw, kernel_len: int) -> str | None:
    """None if the one-pass filter gives MNE's values for ``raw``, else the reason MNE's own passes are used."""
    descriptions = [str(d).lower() for d in raw.annotations.description]
    split = sorted({d for d in descriptions if d.startswith(_MNE_SKIP_ANNOTATIONS)})
    if split:
        return f"recording split by {', '.join(split)} annotations (MNE filters each piece on its own)"
    if kernel_len >= raw.n_times:
        return f"recording ({raw.n_times} samples) shorter than the filter ({kernel_len} taps)"
    return None


def _fft_length(n_taps: int, n_padded: int) -> int:
    """Overlap-add block length: a power of two of at least 8 kernel lengths (about 1/8 of each block is
    overlap), capped at the padded signal's length rounded up to a power of two."""
    return int(min(2 ** np.ceil(np.log2(8 * n_taps)), 2 ** np.ceil(np.log2(n_padded + n_taps - 1))))


def apply_zero_phase_fir(data: np.ndarray, kernel: np.ndarray) -> None:
    """Filter ``data`` (n_channels, n_times), float64, in place with the symmetric odd-length ``kernel`` at zero
    phase: each block of channels is padded by odd reflection about its end samples (kernel length - 1 samples
    each side, MNE's ``reflect_limited``), convolved by overlap-add FFT and written back centred."""
    n_taps = kernel.size
    n_ch, n_times = data.shape
    if n_taps % 2 != 1 or not np.array_equal(kernel, kernel[::-1]):
        raise ValueError("apply_zero_phase_fir needs a symmetric kernel of odd length")
    if n_taps >= n_times:
        raise ValueError(f"the signal ({n_times} samples) must be longer than the kernel ({n_taps} taps)")
    edge = n_taps - 1
    n_padded = n_times + 2 * edge
    n_fft = _fft_length(n_taps, n_padded)
    step = n_fft - n_taps + 1  # new input samples per block
    spectrum = np.fft.rfft(kernel, n_fft)
    first = (n_taps - 1) // 2 + edge  # the output sample aligned with data[:, 0]
    for c0 in range(0, n_ch, _CHANNELS_PER_BLOCK):
        block = data[c0 : c0 + _CHANNELS_PER_BLOCK]
        padded = np.pad(block, ((0, 0), (edge, edge)), mode="reflect", reflect_type="odd")
        out = np.zeros((block.shape[0], n_padded + n_fft))
        for s0 in range(0, n_padded, step):
            seg = np.fft.rfft(padded[:, s0 : s0 + step], n_fft, axis=-1)
            seg *= spectrum
            out[:, s0 : s0 + n_fft] += np.fft.irfft(seg, n_fft, axis=-1)
        block[:] = out[:, first : first + n_times]


def band_pass_and_notch(raw, l_freq: float, h_freq: float, notch_hz) -> str | None:
    """Band-pass ``raw`` to [l_freq, h_freq] and notch ``notch_hz``, in place, as MNE's ``raw.filter`` then
    ``raw.notch_filter`` do, in one pass where that gives their values; returns None, or the one-line reason
    MNE's own passes were used. ``raw.info`` records the band as ``raw.filter`` would."""
    kernel = band_pass_and_notch_kernel(raw.info["sfreq"], l_freq, h_freq, notch_hz)
    reason = combined_filter_applies(raw, kernel.size)
    if reason is not None:
        raw.filter(l_freq, h_freq, verbose="error")
        if len(notch_hz):
            raw.notch_filter(list(notch_hz), verbose="error")
        return reason
    apply_zero_phase_fir(raw._data, kernel)  # the loaded array itself (no copy of the recording)
    with raw.info._unlock():  # what raw.filter records: the band only narrows
        if raw.info["highpass"] is None or l_freq > raw.info["highpass"]:
            raw.info["highpass"] = float(l_freq)
        if raw.info["lowpass"] is None or h_freq < raw.info["lowpass"]:
            raw.info["lowpass"] = float(h_freq)
    return None
