"""Datasets: on-disk format readers, the records they yield, augmentation, synthetic data, checks."""
