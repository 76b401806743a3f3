"""The records a batch is made of: one item per checkpoint (what travels to a worker), the settings
every item of a batch shares, and the rule that names a model after its checkpoint's folder.

No Prefect, no TensorFlow: the CLI checks a whole batch with these before anything starts.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import ParameterError
from tasks.core.layout import check_model_name
from tasks.storage.uris import GS_SCHEME, is_gs_uri

_INVALID = re.compile(r"[^a-z0-9_.-]+")


class FleetItem(BaseModel):
    """One checkpoint to convert: a path or gs:// URI and how to convert it, never the model's bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint: str = Field(description="Checkpoint folder or prefix: an absolute local path or a gs:// URI.")
    model_name: str = Field(description="Name of the model at the destination.")
    output_nodes: Optional[tuple[str, ...]] = Field(default=None, description="TF1: output node(s) to keep.")
    entrypoint: Optional[str] = Field(default=None, description="TF2: package.module:function that builds its model.")
    origin: str = Field(description="Where the item came from, for messages: a folder, or FILE:LINE.")


class BatchSettings(BaseModel):
    """What every item of a batch shares; it travels with each item so a worker needs no settings of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    destination: str
    workspace: str = Field(description="The submitting machine's workspace (cache and stage outputs).")
    signature: dict[str, Any]
    validation: dict[str, Any]
    refresh_cache: bool = False
    freeze_engine: str = "stream"


def model_name_for(checkpoint: str, is_folder: bool) -> str:
    """The checkpoint's folder name made a valid model name: lowercase, other characters as '-'.

    ``is_folder`` says whether ``checkpoint`` names the folder itself or a prefix inside it
    (``runs/lr-0.1/model`` is named ``lr-0.1``).
    """
    path = PurePosixPath(checkpoint.rstrip("/")[len(GS_SCHEME):] if is_gs_uri(checkpoint) else checkpoint.rstrip("/"))
    folder = path if is_folder else path.parent
    name = _INVALID.sub("-", folder.name.lower()).strip("-_.")[:63].rstrip("-_.")
    if not name:
        raise ParameterError(
            f"checkpoint {checkpoint}: its folder name {folder.name!r} makes no valid model name; "
            "list it in a JSON Lines SOURCE with a \"model_name\""
        )
    return check_model_name(name)


class UniqueNames:
    """Remembers which item claimed each model name; a second claim is refused before any work starts."""

    def __init__(self) -> None:
        self._claimed: dict[str, str] = {}

    def claim(self, item: FleetItem) -> None:
        first = self._claimed.get(item.model_name)
        if first is not None:
            both = f"{item.origin} is listed twice" if first == item.origin else f"{first} and {item.origin}"
            raise ParameterError(
                f"{both}: both would publish as model {item.model_name!r}; "
                "rename a folder or give each a \"model_name\" in a JSON Lines SOURCE"
            )
        self._claimed[item.model_name] = item.origin

    def __len__(self) -> int:
        return len(self._claimed)
