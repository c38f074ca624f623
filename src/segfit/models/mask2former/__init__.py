"""Mask2Former (semantic, instance, panoptic) on transformers: spec, labels, data, recipe, post-processing, export."""
