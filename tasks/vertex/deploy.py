"""Vertex AI: a published ``gs://`` version as a Model on an Endpoint, and taking it down again.

:func:`deploy_version` uploads the version as a Model (a prebuilt TensorFlow serving container),
deploys it to an Endpoint (reused, or created), and sends the guide's request to it, expecting the
predictions the manifest recorded. On any failure, Ctrl-C included, it takes back what this run
made and nothing else: the deployed model is undeployed (the endpoint's previous traffic split
restored), an endpoint it created and the Model it uploaded are deleted.

A smoke deployment can be given a time to live: its Model (and an endpoint the run created) carry
the label ``freezeflow_expires_at`` (Unix seconds). :func:`undeploy_expired`, which a scheduled CI job
runs as ``freezeflow undeploy --expired``, takes down every deployment past it, so one that a
cancelled job left behind goes too. :func:`undeploy_deployment` takes one down at once from the
record ``deploy`` wrote. See ``examples/ci-vertex-smoke.md``.

All calls go through the google-cloud-aiplatform GAPIC clients on their REST transport, in production
and in the tests alike: the tests point ``api_endpoint`` at a loopback stand-in of these few methods.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from functools import partial
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.core import layout
from tasks.vertex import defaults
from tasks.core.errors import DeploymentError, ParameterError
from tasks.core.records import VertexDeployment
from tasks.storage.uris import is_gs_uri, split_model_uri

log = logging.getLogger("freezeflow.vertex")

DEFAULT_SERVING_IMAGE = defaults.SERVING_IMAGE
EXPIRES_LABEL = "freezeflow_expires_at"


class VertexParams(BaseModel):
    """Where and how the deploy stage puts a published version on Vertex AI."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Deploy to Vertex AI after publishing (needs a gs:// destination).")
    project: Optional[str] = Field(default=None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
                                   description="Google Cloud project ID.")
    region: str = Field(default=defaults.REGION, pattern=r"^[a-z]+-[a-z]+[0-9]+$", description="Vertex AI region.")
    endpoint: Optional[str] = Field(
        default=None,
        description="Endpoint to deploy to: its ID, resource name or display name (reused, or created when no "
                    "endpoint has that display name). Default: display name 'freezeflow-MODEL'.",
    )
    machine_type: str = Field(default=defaults.MACHINE_TYPE, min_length=1, description="Machine type of the serving nodes.")
    min_replica_count: int = Field(default=1, ge=1, le=100, description="Serving nodes kept up.")
    max_replica_count: int = Field(default=1, ge=1, le=100, description="Serving nodes at most (autoscaling).")
    serving_image: str = Field(default=DEFAULT_SERVING_IMAGE, min_length=1,
                               description="Serving container image; a prebuilt TensorFlow CPU image by default.")
    ttl_seconds: Optional[int] = Field(
        default=None, ge=60,
        description="Time to live of a smoke deployment: label it to be taken down by 'freezeflow undeploy --expired'.",
    )
    smoke_tolerance: float = Field(default=1e-4, ge=0, description="Largest difference allowed in the smoke prediction.")
    operation_timeout_seconds: float = Field(default=1800, gt=0, description="How long to wait for each operation.")
    api_endpoint: Optional[str] = Field(
        default=None, description="API host; default REGION-aiplatform.googleapis.com (tests use a loopback URL).",
    )

    @model_validator(mode="after")
    def _project_when_enabled(self) -> "VertexParams":
        if self.enabled and not self.project:
            raise ValueError("project is required when the Vertex AI deploy is enabled")
        if self.max_replica_count < self.min_replica_count:
            raise ValueError("max_replica_count must be at least min_replica_count")
        return self

    @property
    def host(self) -> str:
        return self.api_endpoint or f"{self.region}-aiplatform.googleapis.com"

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


def _clients(params: VertexParams, credentials: Any) -> tuple[Any, Any]:
    try:
        from google.cloud.aiplatform_v1.services.endpoint_service import EndpointServiceClient
        from google.cloud.aiplatform_v1.services.model_service import ModelServiceClient
    except ImportError as exc:
        raise ImportError(f"the Vertex AI deploy needs google-cloud-aiplatform: pip install 'freezeflow[vertex]' ({exc})") from exc
    options = {"api_endpoint": params.host}
    return (ModelServiceClient(credentials=credentials, transport="rest", client_options=options),
            EndpointServiceClient(credentials=credentials, transport="rest", client_options=options))


def predict_url_of(params: VertexParams, endpoint: str) -> str:
    host = params.host if "://" in params.host else f"https://{params.host}"
    return f"{host.rstrip('/')}/v1/{endpoint}:predict"


def _label(value: str) -> str:
    """A label value: lowercase letters, digits, '-' and '_', at most 63 characters."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower())[:63]


def resolve_endpoint(endpoints: Any, params: VertexParams, display_name: str, labels: dict[str, str]) -> tuple[Any, bool]:
    """The endpoint ``params.endpoint`` names (ID, resource name or display name); created when none has the name."""
    from google.cloud.aiplatform_v1 import types

    wanted = params.endpoint or display_name
    if wanted.isdigit():
        return endpoints.get_endpoint(name=f"{params.parent}/endpoints/{wanted}"), False
    if wanted.startswith("projects/"):
        return endpoints.get_endpoint(name=wanted), False
    found = list(endpoints.list_endpoints(request=types.ListEndpointsRequest(
        parent=params.parent, filter=f'display_name="{wanted}"')))
    if len(found) > 1:
        raise ParameterError(
            f"{len(found)} endpoints are named {wanted!r} ({', '.join(e.name for e in found)}); pass one's ID as endpoint"
        )
    if found:
        return found[0], False
    log.info("creating endpoint %r in %s", wanted, params.parent)
    operation = endpoints.create_endpoint(parent=params.parent,
                                          endpoint=types.Endpoint(display_name=wanted, labels=labels))
    return operation.result(timeout=params.operation_timeout_seconds), True


def smoke_request(manifest: dict[str, Any]) -> tuple[list, list]:
    """The guide's request from a manifest: its reference inputs under the signature's input key, and the answers."""
    try:
        input_key = next(iter(manifest["signature"]["inputs"]))
        inputs = manifest["validation"]["reference_inputs"]
        expected = manifest["validation"]["predictions"]["checkpoint"]
    except (KeyError, TypeError, StopIteration) as exc:
        raise ParameterError(f"the manifest lacks the signature or validation the smoke prediction needs ({exc})") from exc
    return [{input_key: value} for value in inputs], expected


def _compare(got: Any, expected: list, tolerance: float) -> Optional[str]:
    from tasks.core.tolerance import compare

    comparison = compare(got, expected, rtol=0.0, atol=tolerance)
    if not comparison.same_shape:
        return (f"predictions {got} have shape {list(comparison.got_shape)}, "
                f"expected {list(comparison.expected_shape)}")
    if comparison.passed:
        return None
    if comparison.max_abs_difference == float("inf"):  # values that are not numbers, and differ
        return f"predictions {got}, expected {expected}"
    return (f"predictions {got} differ from {expected} by {comparison.max_abs_difference:.3g} "
            f"({comparison.tolerance_text()})")


def deploy_version(
    artifact_uri: str,
    manifest: dict[str, Any],
    model_name: str,
    version: int,
    params: VertexParams,
    credentials: Any = None,
) -> VertexDeployment:
    """Upload, deploy, smoke-test; on any failure undeploy and delete what this call made, then raise."""
    from google.cloud.aiplatform_v1 import types

    from tasks.serving.predict import send_predict_request

    if not params.project:
        raise ParameterError("Vertex AI deploy needs a project (--project)")
    if not is_gs_uri(artifact_uri):
        raise ParameterError(f"Vertex AI serves models from Cloud Storage; {artifact_uri} is not a gs:// URI")
    instances, expected = smoke_request(manifest)
    models, endpoints = _clients(params, credentials)
    expires_at = int(time.time()) + params.ttl_seconds if params.ttl_seconds else None
    labels = {"freezeflow_model": _label(model_name), "freezeflow_version": str(version)}
    if expires_at:
        labels[EXPIRES_LABEL] = str(expires_at)
    made: dict[str, Any] = {}
    try:
        log.info("uploading %s as a Vertex AI model", artifact_uri)
        uploaded = models.upload_model(parent=params.parent, model=types.Model(
            display_name=f"{model_name}-v{version}", artifact_uri=artifact_uri, labels=labels,
            container_spec=types.ModelContainerSpec(image_uri=params.serving_image),
        )).result(timeout=params.operation_timeout_seconds)
        made["model"] = uploaded.model
        endpoint_labels = {EXPIRES_LABEL: labels[EXPIRES_LABEL]} if expires_at else {}
        endpoint, created = resolve_endpoint(endpoints, params, f"freezeflow-{model_name}", endpoint_labels)
        if created:
            made["endpoint"] = endpoint.name
        previous = dict(endpoint.traffic_split)
        # Our own ID (Vertex takes 1-10 digits) lets a rollback find the deployed model even when the
        # deploy operation timed out on our side before it told us the ID.
        deployed_id = str(secrets.randbelow(9 * 10**9) + 10**9)
        made["deploying"] = (endpoint.name, deployed_id, previous)
        log.info("deploying %s to %s as deployed model %s", uploaded.model, endpoint.name, deployed_id)
        endpoints.deploy_model(
            endpoint=endpoint.name,
            deployed_model=types.DeployedModel(
                id=deployed_id, model=uploaded.model, display_name=f"{model_name}-v{version}",
                dedicated_resources=types.DedicatedResources(
                    machine_spec=types.MachineSpec(machine_type=params.machine_type),
                    min_replica_count=params.min_replica_count, max_replica_count=params.max_replica_count,
                ),
            ),
            traffic_split={"0": 100},  # "0" is the model being deployed: the new version takes all traffic
        ).result(timeout=params.operation_timeout_seconds)
        url = predict_url_of(params, endpoint.name)
        answer = send_predict_request(url, json.dumps({"instances": instances}).encode(), credentials=credentials)
        if answer.get("deployedModelId") not in (None, deployed_id):
            raise DeploymentError(f"the smoke prediction was answered by deployed model {answer['deployedModelId']}, "
                                  f"not by {deployed_id}")
        mismatch = _compare(answer.get("predictions"), expected, params.smoke_tolerance)
        if mismatch:
            raise DeploymentError(f"smoke prediction at {url}: {mismatch}")
    except BaseException as exc:
        notes = _roll_back(models, endpoints, made, params)
        if not isinstance(exc, Exception):
            raise
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DeploymentError(f"Vertex AI deploy of {artifact_uri} failed: {reason}; rollback: {'; '.join(notes) or 'nothing to undo'}") from exc
    return VertexDeployment(
        project=params.project, region=params.region, api_endpoint=params.api_endpoint, endpoint=endpoint.name,
        endpoint_created=created, model=uploaded.model, deployed_model_id=deployed_id,
        previous_traffic_split=previous, predict_url=url, smoke_predictions=answer["predictions"], expires_at=expires_at,
    )


def _roll_back(models: Any, endpoints: Any, made: dict[str, Any], params: VertexParams) -> list[str]:
    """Take back, newest first, what ``made`` records; each step's failure is reported, the rest still run."""
    notes: list[str] = []
    timeout = params.operation_timeout_seconds
    if "deploying" in made:
        endpoint, deployed_id, previous = made["deploying"]
        notes.append(_step(f"undeployed {deployed_id} from {endpoint}", f"undeploy {deployed_id} from {endpoint}",
                           partial(_undeploy_if_present, endpoints, endpoint, deployed_id, previous, timeout)))
    if "endpoint" in made:
        notes.append(_step(f"deleted endpoint {made['endpoint']}", f"delete endpoint {made['endpoint']}",
                           partial(_finish, endpoints.delete_endpoint, made["endpoint"], timeout)))
    if "model" in made:
        notes.append(_step(f"deleted model {made['model']}", f"delete model {made['model']}",
                           partial(_finish, models.delete_model, made["model"], timeout)))
    return notes


def _finish(delete: Any, name: str, timeout: float) -> None:
    """Start a delete and wait for its long-running operation."""
    delete(name=name).result(timeout=timeout)


def _step(done: str, todo: str, action: Any) -> str:
    """Run one clean-up action; its note says what was done, or what is left to remove by hand."""
    try:
        result = action()
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]
        log.error("could not %s: %s", todo, reason)
        return f"FAILED to {todo} ({reason}); remove it by hand"
    note = result if isinstance(result, str) else done
    log.info("%s", note)
    return note


def _undeploy_if_present(endpoints: Any, endpoint: str, deployed_id: str, previous: dict[str, int],
                         timeout: float) -> Optional[str]:
    current = endpoints.get_endpoint(name=endpoint)
    remaining = [m.id for m in current.deployed_models if m.id != deployed_id]
    if len(remaining) == len(current.deployed_models):
        return f"deployed model {deployed_id} was never deployed to {endpoint}"
    split = traffic_after_undeploy(previous or dict(current.traffic_split), remaining)
    endpoints.undeploy_model(endpoint=endpoint, deployed_model_id=deployed_id,
                             traffic_split=split).result(timeout=timeout)
    return None


def traffic_after_undeploy(previous: dict[str, int], remaining: list[str]) -> dict[str, int]:
    """The traffic split for the deployed models left: their previous shares scaled to 100.

    Vertex refuses to undeploy a model that still has traffic unless the request gives the split that
    takes it away; with no models left the split must be empty.
    """
    if not remaining:
        return {}
    shares = {k: v for k, v in previous.items() if k in remaining and v > 0}
    if not shares:
        return {remaining[0]: 100}
    total = sum(shares.values())
    exact = {k: v * 100 / total for k, v in shares.items()}
    split = {k: int(v) for k, v in exact.items()}
    for key in sorted(exact, key=lambda k: exact[k] - split[k], reverse=True)[: 100 - sum(split.values())]:
        split[key] += 1  # largest remainder: the shares add up to exactly 100
    return split


def undeploy_deployment(deployment: VertexDeployment, credentials: Any = None) -> list[str]:
    """Take down what one deploy made (its record): undeploy, delete its model, and its endpoint if it created it."""
    params = VertexParams(project=deployment.project, region=deployment.region, api_endpoint=deployment.api_endpoint)
    models, endpoints = _clients(params, credentials)
    made: dict[str, Any] = {"deploying": (deployment.endpoint, deployment.deployed_model_id,
                                          deployment.previous_traffic_split), "model": deployment.model}
    if deployment.endpoint_created:
        made["endpoint"] = deployment.endpoint
    notes = _roll_back(models, endpoints, made, params)
    if any(n.startswith("FAILED") for n in notes):
        raise DeploymentError("undeploy incomplete: " + "; ".join(notes))
    return notes


def undeploy_expired(params: VertexParams, now: Optional[float] = None, credentials: Any = None) -> list[str]:
    """Take down every deployment whose ``freezeflow_expires_at`` label has passed: a scheduled janitor."""
    from google.cloud.aiplatform_v1 import types

    if not params.project:
        raise ParameterError("undeploy --expired needs a project (--project)")
    models, endpoints = _clients(params, credentials)
    now = time.time() if now is None else now
    timeout = params.operation_timeout_seconds

    def expired(labels: Any) -> bool:
        value = dict(labels).get(EXPIRES_LABEL, "")
        return value.isdigit() and int(value) <= now

    listed = models.list_models(request=types.ListModelsRequest(parent=params.parent, filter=f"labels.{EXPIRES_LABEL}:*"))
    gone = {m.name.rsplit("/", 1)[-1]: m.name for m in listed if expired(m.labels)}
    notes: list[str] = []
    for endpoint in endpoints.list_endpoints(parent=params.parent):
        mine = [d.id for d in endpoint.deployed_models if d.model.rsplit("/", 1)[-1] in gone]
        for deployed_id in mine:
            notes.append(_step(f"undeployed {deployed_id} from {endpoint.name}",
                               f"undeploy {deployed_id} from {endpoint.name}",
                               partial(_undeploy_if_present, endpoints, endpoint.name, deployed_id, {}, timeout)))
        if expired(endpoint.labels) and len(mine) == len(endpoint.deployed_models):
            notes.append(_step(f"deleted endpoint {endpoint.name}", f"delete endpoint {endpoint.name}",
                               partial(_finish, endpoints.delete_endpoint, endpoint.name, timeout)))
    for name in gone.values():
        notes.append(_step(f"deleted model {name}", f"delete model {name}",
                           partial(_finish, models.delete_model, name, timeout)))
    if any(n.startswith("FAILED") for n in notes):
        raise DeploymentError("undeploy --expired incomplete: " + "; ".join(notes))
    return notes


def split_version_uri(uri: str) -> tuple[str, str, int]:
    """``gs://bucket/prefix/MODEL/VERSION`` as (destination, model, version)."""
    found = split_model_uri(uri) if is_gs_uri(uri) else None
    if found is None or found[2] is None:
        raise ParameterError(f"{uri!r} is not a published version: expected gs://bucket/prefix/MODEL/VERSION")
    destination, model, version = found
    return destination, model, version


def deploy_published(version_uri: str, params: VertexParams, credentials: Any = None) -> VertexDeployment:
    """Deploy the version a ``gs://…/MODEL/VERSION`` URI names, smoke-tested against its manifest."""
    from tasks.storage.destinations import open_destination

    destination, model, version = split_version_uri(version_uri)
    manifest = open_destination(destination).read_manifest(model, version)
    if manifest is None:
        raise ParameterError(f"{version_uri} has no {layout.MANIFEST}: it is not a complete published version")
    return deploy_version(version_uri, manifest, model, version, params, credentials)
