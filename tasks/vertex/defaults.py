"""Where a Vertex AI deploy goes unless told otherwise: one definition each, for VertexParams and the CLI.

Plain constants, so ``freezeflow --help`` can show them without building the Pydantic models.
"""

from __future__ import annotations

REGION = "us-central1"
MACHINE_TYPE = "n1-standard-2"
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"  # prebuilt TensorFlow CPU serving
