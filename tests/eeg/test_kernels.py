"""pipelines.eeg.kernels against antropy 0.2.3 and scipy, and its edge-case rules.

Every comparison is on fixed seeded inputs, rtol 1e-9. No timing asserts (speed is
measured by benchmarks/bench_kernels.py).
"""

import math

import numpy as np
import pytest
from scipy.signal import hilbert

import pipelines.eeg.kernels as K

ant = pytest.importorskip("antropy")
from antropy.entropy import _lz_complexity  # noqa: E402  (the O(n^2) reference count)

RTOL = 1e-9
SFREQ = 250.0


def _eeg_like(n_ch, n, seed):
    """Band-limited noise with an alpha rhythm and a random walk: smooth like real EEG."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(seed)
    t = np.arange(n) / SFREQ
    x = rng.standard_normal((n_ch, n)) + 0.05 * np.cumsum(rng.standard_normal((n_ch, n)), -1)
    x += 2 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n_ch, 1)))
    return np.ascontiguousarray(sosfiltfilt(butter(4, [1, 45], "bandpass", fs=SFREQ, output="sos"), x))


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(42)
    return {
        "white": rng.standard_normal((2, 600)),
        "eeg": _eeg_like(2, 600, 1),
        "ties": rng.integers(-3, 4, (2, 600)).astype(float),  # many tied values
        "short": rng.standard_normal((1, 64)),
    }


def _ref_rows(fn, x2d):
    return np.array([fn(np.ascontiguousarray(r)) for r in x2d])


# name, our function, antropy reference (1-D), kwargs ours, kwargs antropy
CASES = [
    ("pe3", K.perm_entropy, ant.perm_entropy, {}, {"normalize": True}),
    (
        "pe4_d2_bits",
        K.perm_entropy,
        ant.perm_entropy,
        dict(order=4, delay=2, normalize=False),
        dict(order=4, delay=2, normalize=False),
    ),
    ("pe6", K.perm_entropy, ant.perm_entropy, dict(order=6, delay=1), dict(order=6, delay=1, normalize=True)),
    ("specent", lambda x: K.spectral_entropy_welch(x, SFREQ), None, {}, {}),
    ("specent_128_bits", lambda x: K.spectral_entropy_welch(x, SFREQ, nperseg=128, normalize=False), None, {}, {}),
    ("sampen", K.sample_entropy, ant.sample_entropy, {}, {}),
    ("sampen_o3", K.sample_entropy, ant.sample_entropy, dict(order=3), dict(order=3)),
    ("svd", K.svd_entropy, ant.svd_entropy, {}, {"normalize": True}),
    (
        "svd_o5_d3_bits",
        K.svd_entropy,
        ant.svd_entropy,
        dict(order=5, delay=3, normalize=False),
        dict(order=5, delay=3, normalize=False),
    ),
    ("higuchi", K.higuchi_fd, ant.higuchi_fd, {}, {}),
    ("higuchi_k5", K.higuchi_fd, ant.higuchi_fd, dict(kmax=5), dict(kmax=5)),
    ("katz", K.katz_fd, ant.katz_fd, {}, {}),
    ("dfa", K.dfa, ant.detrended_fluctuation, {}, {}),
]


@pytest.mark.parametrize("kind", ["white", "eeg", "ties", "short"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_measure_equals_antropy(signals, kind, case):
    name, ours, ref, kw, kw_ref = case
    x = signals[kind]
    if name.startswith("specent"):
        nperseg = 128 if "128" in name else None
        normalize = "bits" not in name
        ref = lambda v: ant.spectral_entropy(v, SFREQ, method="welch", nperseg=nperseg, normalize=normalize)
        kw_ref = {}
    got = ours(x, **kw)
    want = _ref_rows(lambda r: ref(r, **kw_ref), x)
    assert got.shape == (x.shape[0],)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


def test_windowed_3d_equals_per_window_antropy(signals):
    x = signals["eeg"]
    w = K.sliding_windows(x, 200, 100)  # overlapping windows
    assert w.shape == (2, 5, 200)
    got = K.compute_windowed(x, SFREQ, 200, 100, measures=["perm_entropy", "sample_entropy", "dfa"])
    for ch in range(2):
        for i in range(5):
            v = np.ascontiguousarray(w[ch, i])
            assert got["perm_entropy"][ch, i] == pytest.approx(ant.perm_entropy(v, normalize=True), rel=RTOL)
            assert got["sample_entropy"][ch, i] == pytest.approx(ant.sample_entropy(v), rel=RTOL)
            assert got["dfa"][ch, i] == pytest.approx(ant.detrended_fluctuation(v), rel=RTOL)


def test_spectral_entropy_equals_scipy_welch_definition(signals):
    from scipy.signal import welch

    x = signals["eeg"][0]
    _, psd = welch(x, SFREQ, nperseg=256)
    p = psd / psd.sum()
    want = -(p * np.log2(p)).sum() / np.log2(p.size)
    assert K.spectral_entropy_welch(x, SFREQ) == pytest.approx(want, rel=RTOL)


def test_sample_entropy_inclusive_equals_antropy_kdtree_path():
    # antropy switches to sklearn KDTree (|d| <= r) from 5000 samples on
    x = np.ascontiguousarray(_eeg_like(1, 5200, 3)[0])
    assert K.sample_entropy(x, inclusive=True) == pytest.approx(ant.sample_entropy(x), rel=RTOL)
    # and the strict count is antropy's numba path on the same data
    ref = ant.entropy._numba_sampen(x, 2, 0.2 * np.std(x))
    assert K.sample_entropy(x) == pytest.approx(ref, rel=RTOL)


def test_sample_entropy_no_match_rules():
    # one pair matches on 2 coordinates, none on 3 -> A = 0 -> inf (as antropy)
    x = np.array([0.0, 10.0, 0.0, 10.0, 20.0, -20.0])
    assert K.sample_entropy(x) == np.inf == ant.sample_entropy(x)
    # all values differ by more than r = 0.2 * std -> no pair matches (B = 0) -> NaN (as antropy)
    x = np.arange(10.0)
    assert np.isnan(K.sample_entropy(x)) and np.isnan(ant.sample_entropy(x))


# --- edge cases --------------------------------------------------------------------------

CONSTANT_EXPECTED = {
    "perm_entropy": 0.0,
    "spectral_entropy_welch": np.nan,
    "sample_entropy": np.nan,
    "svd_entropy": 0.0,
    "higuchi_fd": np.nan,
    "katz_fd": np.nan,
    "dfa": np.nan,
    "lzc_median": 2 / (300 / math.log2(300)),
    "lzs_schartner": np.nan,
}


@pytest.mark.parametrize("value", [0.0, 3.3])
def test_constant_signal_rules(value):
    x = np.full((1, 300), value)
    got = K.compute_windowed(x[:, None, :], SFREQ, None, None, measures=list(CONSTANT_EXPECTED))
    for m, want in CONSTANT_EXPECTED.items():
        np.testing.assert_equal(got[m][0, 0], want, err_msg=m)
    # where antropy defines a value it is the same
    v = x[0]
    assert ant.perm_entropy(v) == 0.0
    assert np.isnan(ant.katz_fd(v)) and np.isnan(ant.higuchi_fd(v))
    if value == 0.0:  # for 3.3, x - mean(x) is rounding noise and antropy returns numbers
        assert np.isnan(ant.sample_entropy(v)) and np.isnan(ant.detrended_fluctuation(v))
    assert abs(ant.svd_entropy(v)) < 1e-9
    assert K.lzc_median(v) == ant.lziv_complexity((v > np.median(v)).astype(int), normalize=True)


def test_nan_window_gives_nan_only_there(signals):
    x = signals["eeg"].copy()
    x[1, 250] = np.nan  # window 1 of channel 1 (windows of 200, step 200)
    x[0, 450] = np.inf  # window 2 of channel 0
    got = K.compute_windowed(x, SFREQ, 200, 200)
    clean = K.compute_windowed(signals["eeg"], SFREQ, 200, 200)
    for m in K.PER_CHANNEL_MEASURES:
        bad = np.zeros((2, 3), bool)
        bad[1, 1] = bad[0, 2] = True
        assert np.isnan(got[m][bad]).all(), m
        np.testing.assert_array_equal(got[m][~bad], clean[m][~bad], err_msg=m)
    st = got["lzc_schartner_st"]
    assert np.isnan(st[1]) and np.isnan(st[2]) and st[0] == clean["lzc_schartner_st"][0]


@pytest.mark.parametrize(
    "measure, params, n_ok",
    [
        ("perm_entropy", {"order": 3, "delay": 2}, 5),
        ("svd_entropy", {"order": 3, "delay": 2}, 6),
        ("sample_entropy", {"order": 2}, 4),
        ("higuchi_fd", {"kmax": 10}, 20),
        ("dfa", {}, 58),
        ("katz_fd", {}, 3),
    ],
)
def test_too_short_raises_and_minimum_works(measure, params, n_ok):
    assert K.min_samples(measure, **params) == n_ok
    fn = getattr(K, measure)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=f"{measure} needs at least {n_ok} samples"):
        fn(rng.standard_normal(n_ok - 1), **params)
    fn(rng.standard_normal(n_ok), **params)  # no error at the minimum
    with pytest.raises(ValueError, match="needs at least"):
        K.compute_windowed(
            rng.standard_normal((1, 100)),
            SFREQ,
            n_ok - 1,
            n_ok - 1,
            measures=[measure],
            params={measure: params} if params else None,
        )


def test_minimum_length_values_match_antropy():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(5)
    assert K.perm_entropy(x, 3, 2) == pytest.approx(ant.perm_entropy(x, 3, 2, normalize=True), rel=RTOL)
    x = rng.standard_normal(6)
    assert K.svd_entropy(x, 3, 2) == pytest.approx(ant.svd_entropy(x, 3, 2, normalize=True), rel=RTOL)
    x = rng.standard_normal(58)
    assert K.dfa(x) == pytest.approx(ant.detrended_fluctuation(x), rel=RTOL)


def test_tied_values_follow_stable_argsort():
    # ties ordered by position, as antropy >= 0.2.2
    x = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0, 3.0, 0.0, 0.0])
    for order in (3, 4, 5):
        assert K.perm_entropy(x, order, normalize=False) == pytest.approx(
            ant.perm_entropy(x, order, normalize=False), rel=RTOL
        )


# --- Lempel-Ziv --------------------------------------------------------------------------


def test_lz76_count_equals_antropy_on_many_sequences():
    rng = np.random.default_rng(7)
    seqs = [np.zeros(1), np.ones(1), np.zeros(2), np.array([0, 1]), np.zeros(500), np.ones(333)]
    for n in rng.integers(2, 700, 300):
        kind = rng.integers(4)
        if kind == 0:
            s = rng.random(n) < rng.random()
        elif kind == 1:
            per = rng.integers(1, 12)
            s = np.tile(rng.random(per) < 0.5, n // per + 1)[:n]
        elif kind == 2:  # runs, like a binarised oscillation
            s = np.sin(np.arange(n) * rng.uniform(0.05, 1.0)) > 0
        else:
            s = rng.random(n) < 0.5
            s[rng.integers(n) :] = s[0]  # long constant tail
        seqs.append(s)
    seqs.append(rng.random(20000) < 0.5)  # long random: goes through the prefix index
    seqs.append(np.sin(np.arange(30000) * 0.07) > 0)  # long regular: index gives up, automaton
    for s in seqs:
        s = np.asarray(s, dtype=np.uint8)
        want = _lz_complexity(s.astype(np.uint32))
        assert K.lz76_count(s) == want, s.size
        # both exact methods, whatever the length: automaton, and prefix index with small K
        assert K._lz76_count_sam(s, np.empty((2 * s.size + 2, 4), np.int32)) == want
        if s.size <= 700:
            for kbits in (1, 3, 8, 19):  # 19: a head table of 2 MB, prefetched
                assert K._lz76_count_hash(s, kbits, 10**9) == want, (s.size, kbits)


def test_lz76_prefix_index_gives_up_past_budget():
    s = np.zeros(5000, np.uint8)
    s[::7] = 1  # periodic: every candidate extends far
    assert K._lz76_count_hash(s, 2, 10) == -1
    assert K.lz76_count(s) == _lz_complexity(s.astype(np.uint32))


def test_lz76_count_rejects_non_binary():
    with pytest.raises(ValueError):
        K.lz76_count(np.array([0, 1, 2]))


def test_lzc_median_equals_antropy_on_binarised(signals):
    for x in signals.values():
        got = K.lzc_median(x)
        raw = K.lzc_median(x, normalize=False)
        for ch in range(x.shape[0]):
            bits = (x[ch] > np.median(x[ch])).astype(int)
            assert got[ch] == pytest.approx(ant.lziv_complexity(bits, normalize=True), rel=RTOL)
            assert raw[ch] == ant.lziv_complexity(bits)


def test_lzs_schartner_definition(signals):
    x = signals["eeg"]
    w = K.sliding_windows(x, 200, 200)
    got = K.lzs_schartner(w, seed=3)
    for ch in range(2):
        for i in range(3):
            bits = np.abs(hilbert(w[ch, i]))
            bits = (bits > bits.mean()).astype(np.uint8)
            shuffled = K.shuffle_bits(bits, seed=3, channel=ch, window=i)
            assert sorted(shuffled) == sorted(bits)
            want = _lz_complexity(bits.astype(np.uint32)) / _lz_complexity(shuffled.astype(np.uint32))
            assert got[ch, i] == pytest.approx(want, rel=RTOL)
    # seeded: same seed same values, another seed (usually) different
    np.testing.assert_array_equal(got, K.lzs_schartner(w, seed=3))
    assert not np.array_equal(got, K.lzs_schartner(w, seed=4))


def test_lzc_schartner_st_definition(signals):
    x = signals["eeg"]
    got = K.lzc_schartner_st(x, seed=1)
    amp = np.abs(hilbert(x, axis=-1))
    bits = (amp > amp.mean(axis=-1, keepdims=True)).astype(np.uint8)
    seq = bits.T.ravel()  # time-major: for t: for channel
    shuffled = K.shuffle_bits(seq, seed=1, window=0, spatiotemporal=True)
    want = _lz_complexity(seq.astype(np.uint32)) / _lz_complexity(shuffled.astype(np.uint32))
    assert got == pytest.approx(want, rel=RTOL)
    win = K.lzc_schartner_st(K.sliding_windows(x, 300, 300), seed=1)
    assert win.shape == (2,)


def test_schartner_normalisation_sanity():
    rng = np.random.default_rng(11)
    noise = rng.standard_normal((4, 3000))
    t = np.arange(3000) / SFREQ
    # Schartner binarises the Hilbert envelope: a pure sine has a flat envelope (its bits
    # are rounding noise), so the regular signal here is a sine with a slow envelope
    waxing = (1.5 + np.sin(2 * np.pi * 0.5 * t)) * np.sin(2 * np.pi * 10 * t)
    lzs_noise = K.lzs_schartner(noise)
    assert np.all(np.abs(lzs_noise - 1) < 0.15), lzs_noise
    assert K.lzs_schartner(waxing) < 0.1
    assert K.lzc_median(np.sin(2 * np.pi * 10 * t)) < 0.1
    assert abs(K.lzc_schartner_st(noise) - 1) < 0.1


# --- measure sets ------------------------------------------------------------------------


def test_compute_windowed_matches_single_functions_and_threads(signals):
    x = signals["eeg"]
    one = K.compute_windowed(x, SFREQ, 150, 150)
    two = K.compute_windowed(x, SFREQ, 150, 150, n_threads=2)
    assert set(one) == set(K.MEASURES)
    for m in K.MEASURES:
        np.testing.assert_array_equal(one[m], two[m], err_msg=m)
    w = K.sliding_windows(x, 150, 150)
    np.testing.assert_array_equal(one["perm_entropy"], K.perm_entropy(w))
    np.testing.assert_array_equal(one["spectral_entropy_welch"], K.spectral_entropy_welch(w, SFREQ))
    np.testing.assert_array_equal(one["lzs_schartner"], K.lzs_schartner(w))
    np.testing.assert_array_equal(one["lzc_schartner_st"], K.lzc_schartner_st(w))
    assert one["perm_entropy"].shape == (2, 4) and one["lzc_schartner_st"].shape == (4,)


def test_compute_whole_is_one_window(signals):
    x = signals["eeg"]
    whole = K.compute_whole(x, SFREQ)
    assert set(whole) == {"lzc_median", "lzs_schartner", "lzc_schartner_st"}
    np.testing.assert_array_equal(whole["lzc_median"], K.lzc_median(x))
    np.testing.assert_array_equal(whole["lzs_schartner"], K.lzs_schartner(x))
    assert whole["lzc_schartner_st"] == K.lzc_schartner_st(x)


def test_unknown_names_fail_with_hint(signals):
    with pytest.raises(ValueError, match="did you mean 'perm_entropy'"):
        K.compute_windowed(signals["eeg"], SFREQ, 100, 100, measures=["perm_entropie"])
    with pytest.raises(ValueError, match="did you mean 'order'"):
        K.compute_windowed(
            signals["eeg"], SFREQ, 100, 100, measures=["perm_entropy"], params={"perm_entropy": {"ordre": 4}}
        )


def test_windows_and_starts():
    x = np.arange(20.0)[None, :]
    w = K.sliding_windows(x, 6, 4)
    assert w.shape == (1, 4, 6)
    np.testing.assert_array_equal(K.window_starts(20, 6, 4), [0, 4, 8, 12])
    np.testing.assert_array_equal(w[0, :, 0], [0, 4, 8, 12])
    with pytest.raises(ValueError, match="shorter than one window"):
        K.sliding_windows(x, 21, 1)


@pytest.mark.parametrize("length", [0, 1, 2, 7, 300])
def test_lzw_counts_in_groups_equal_one_at_a_time(length):
    """The grouped LZW walk (four or two sequences stepped together) gives each sequence's own count,
    for every group size the measures use (1 original + n_shuffles)."""
    rng = np.random.default_rng(length)
    child = np.empty((4, length + 3, 2), np.int32)
    for m in range(1, 10):
        seqs = (rng.random((m, length)) < rng.uniform(0.05, 0.95, (m, 1))).astype(np.uint8)
        out = np.full(m, -1, np.int64)
        K._lzw_counts(seqs, child, out)
        assert list(out) == [K.lzw_dict_size(s) for s in seqs], (m, length)


def test_two_pass_shuffles_equal_the_one_pass_ones():
    rng = np.random.default_rng(5)
    a = (rng.random(1001) < 0.4).astype(np.uint8)
    idx = np.empty(a.size, np.int32)
    for kind in (1, 2, 3, 4):
        for k in range(3):
            one, two = a.copy(), a.copy()
            K._shuffle_keyed(one, 7, kind, 3, 11, k)
            K._shuffle_keyed_idx(two, 7, kind, 3, 11, k, idx)
            np.testing.assert_array_equal(one, two)
