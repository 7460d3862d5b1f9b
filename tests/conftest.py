"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_model import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny model directory (sentencepiece + ONNX + model.json), built once per session."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model, of another dimension (16), for an index built with another model."""
    return make_tiny_model(tmp_path_factory.mktemp("other") / "tiny16", dim=16)
