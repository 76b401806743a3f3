"""The ``predict`` task: online prediction as a step of a flow (``send_predict_request`` retries per request)."""

from __future__ import annotations

from typing import Optional

from prefect import task

from tasks.serving.predict import VERTEX_MAX_REQUEST_BYTES, predict_instances


@task(name="predict", retries=0)  # send_predict_request retries what a retry can fix, per request
def predict(
    url: str,
    instances: list,
    signature_name: Optional[str] = None,
    max_request_bytes: int = VERTEX_MAX_REQUEST_BYTES,
) -> list:
    return predict_instances(url, instances, signature_name=signature_name, max_request_bytes=max_request_bytes)
