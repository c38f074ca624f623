"""Datasets: on-disk format readers (images and videos), the records they yield, clip sampling, augmentation,
synthetic data, checks, frame extraction."""
