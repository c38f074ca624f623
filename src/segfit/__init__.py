"""segfit: fine-tune, evaluate, run and export segmentation and tracking models from one spec file."""

__version__ = "0.1.0"
