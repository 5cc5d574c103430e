"""EEG: reading, preprocessing, compute kernels and features."""
