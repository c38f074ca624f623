"""SAM 2 on Hugging Face ``transformers``: building, weights, checkpoint conversion, preprocessing, recipe."""
