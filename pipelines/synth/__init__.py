"""Generators of the embedded default study: a synthetic ketamine dose crossover study.

Everything is deterministic from one seed and every planted effect is recorded in ``truth.json``,
so the analyses can be tested against what was put in. ``eeg`` writes the EEG part (BIDS, through
mne-bids); ``phenotype`` writes the questionnaire, mood and cytokine tables (BIDS ``phenotype/``).
"""
