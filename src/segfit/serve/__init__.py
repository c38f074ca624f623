"""``segfit serve``: a local click-to-segment page for SAM 2 models (docs/serve.md)."""
