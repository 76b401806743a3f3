"""Stage 7 (optional, off by default), deploy: a published ``gs://`` version on a Vertex AI Endpoint."""

from __future__ import annotations

from typing import Optional

from prefect import task

from tasks.core.records import Publication
from tasks.vertex.deploy import VertexDeployment, VertexParams, deploy_published


@task(name="deploy", retries=0)  # a failed deploy rolls itself back; a retry would pay for another 15-minute deploy
def deploy(publication: Publication, params: VertexParams) -> Optional[VertexDeployment]:
    if not params.enabled:
        return None
    return deploy_published(publication.uri, params)

