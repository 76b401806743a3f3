"""Models for the serving tests: the guide's model exported by the pipeline's own stage, published as a destination does."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tasks.core.records import ExportedModel


def export_guide(folder: Path, m: float, b: float) -> ExportedModel:
    """y = m·x + b, checkpointed as the guide does and exported by the export stage."""
    from tests.guide import write_guide_checkpoint

    from tasks.tf.checkpoints import describe_checkpoint
    from tasks.tf.saved_models import export_saved_model

    prefix = write_guide_checkpoint(folder / "ckpt", m=m, b=b)
    from tests.support.records import by_folder

    return by_folder(export_saved_model(describe_checkpoint(prefix, output_nodes=["y"])))


def publish(model_dir: Path, version: int, exported: ExportedModel, manifest: bool = True) -> Path:
    """Put an exported SavedModel at MODEL/VERSION the way a destination does: staged, manifest last, renamed."""
    staging = model_dir / f".staging-{version}"
    shutil.copytree(exported.artifact.path(), staging)
    if manifest:
        (staging / "manifest.json").write_text(json.dumps({"model": model_dir.name, "version": version}))
    target = model_dir / str(version)
    os.rename(staging, target)
    return target
