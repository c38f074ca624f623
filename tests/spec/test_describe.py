"""docs/spec.md is generated from the spec dataclasses; it must list every key the loader accepts."""

from pathlib import Path

from segfit.models.sam2.spec import Sam2Spec
from segfit.spec.describe import markdown
from segfit.spec.load import key_paths

DOC = Path(__file__).parents[2] / "docs" / "spec.md"


def test_doc_is_current():
    assert DOC.read_text() == markdown(), "regenerate: python -m segfit.spec.describe > docs/spec.md"


def test_every_key_documented():
    text = markdown()
    for key in key_paths(Sam2Spec):
        assert f"| `{key}` |" in text
