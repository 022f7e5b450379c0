"""Which model a gear runs: the one named on the command line, else the project's newest
version (the bundled ``tiny`` for a new project); either way a version row for provenance."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from ..checkpoints import load
from ..modeling.sam import Sam
from .project import Project
from .schema import ModelVersionRow
from .store import newest_model, register_model

DEFAULT_MODEL = "tiny"


def weights_of(model: str | None, checkpoint: str | os.PathLike[str] | None) -> str | None:
    """What a version records: a bundled name, or a weights file's absolute path."""
    if checkpoint is not None:
        return str(Path(checkpoint).resolve())
    if model is not None and Path(model).is_file():
        return str(Path(model).resolve())
    return model


def gear_model_version(
    project: Project, model: str | None = None, checkpoint: str | None = None
) -> ModelVersionRow:
    """The version row of the model a gear should use (registered on first use)."""
    weights = weights_of(model, checkpoint)
    with project.session() as session:
        if weights is None:
            newest = newest_model(session)
            if newest is not None:
                return newest
            weights = DEFAULT_MODEL
        # a version registered under another name (a retrained one) is found by its weights
        known = session.scalar(
            select(ModelVersionRow)
            .where(ModelVersionRow.weights == weights)
            .order_by(ModelVersionRow.id.desc())
            .limit(1)
        )
        return known if known is not None else register_model(session, weights)


def gear_weights(project: Project, model: str | None = None, checkpoint: str | None = None) -> str:
    """The weights a gear runs (named, else the newest version's, else the bundled model),
    without loading them: what workers elsewhere load."""
    weights = weights_of(model, checkpoint)
    if weights is None:
        with project.session() as session:
            newest = newest_model(session)
        weights = newest.weights if newest is not None else DEFAULT_MODEL
    return weights


def load_gear_model(
    project: Project,
    model: str | None = None,
    checkpoint: str | None = None,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    compile: bool = False,
) -> tuple[Sam, ModelVersionRow]:
    """The loaded model and its version row. The model is loaded before the version is
    registered, so a model that fails to load leaves no row behind."""
    weights = gear_weights(project, model, checkpoint)
    sam = load(weights, device=device, precision=precision, compile=compile)
    return sam, gear_model_version(project, weights)
