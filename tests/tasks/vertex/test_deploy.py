"""The Vertex AI deploy against a loopback stand-in of the REST methods it calls: exact requests, in order, rollback included.

The aiplatform GAPIC clients run unchanged on their REST transport, pointed at the stand-in with
``api_endpoint`` and anonymous credentials; the stand-in keeps models and endpoints as Vertex does,
answers long-running operations as already done, and records every request.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Optional
from urllib.parse import parse_qs, urlsplit

import pytest

from google.auth.credentials import AnonymousCredentials

from tasks.core.errors import DeploymentError
from tasks.vertex.deploy import (
    VertexDeployment,
    VertexParams,
    deploy_version,
    traffic_after_undeploy,
    undeploy_deployment,
    undeploy_expired,
)

PARENT = "projects/demo-project/locations/us-central1"
V1 = "type.googleapis.com/google.cloud.aiplatform.v1."
MANIFEST = {
    "signature": {"inputs": {"inputs": {"name": "x", "dtype": "float32"}}, "outputs": {"outputs": {}}},
    "validation": {"reference_inputs": [2.0, 4.0, 6.0], "predictions": {"checkpoint": [2.0, 3.0, 4.0]}},
}
ARTIFACT = "gs://bucket/models/linear/3"


@dataclass
class Vertex:
    """The state of the stand-in and what it was asked, in order."""

    url: str = ""
    models: dict[str, dict] = field(default_factory=dict)
    endpoints: dict[str, dict] = field(default_factory=dict)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    deploy_error: Optional[str] = None
    predict: Callable[[list], list] = lambda instances: [0.5 * i["inputs"] + 1.0 for i in instances]
    counter: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.requests]

    def add_endpoint(self, display_name: str, deployed: dict[str, int], labels: Optional[dict] = None) -> str:
        name = f"{PARENT}/endpoints/{self._id()}"
        self.endpoints[name] = {
            "name": name, "displayName": display_name, "labels": labels or {},
            "deployedModels": [{"id": i, "model": f"projects/123456/locations/us-central1/models/{i}0"} for i in deployed],
            "trafficSplit": dict(deployed),
        }
        return name

    def _id(self) -> str:
        self.counter += 1
        return str(self.counter)

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        with self.lock:
            self.requests.append((method, path, body))
            return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        name = path.removeprefix("/v1/")
        if method == "POST" and path == f"/v1/{PARENT}/models:upload":
            model = f"{PARENT}/models/{self._id()}"
            self.models[model] = {"name": model, **body["model"]}
            return 200, done("UploadModelResponse", {"model": model})
        if method == "GET" and path == f"/v1/{PARENT}/models":
            return 200, {"models": list(self.models.values())}
        if method == "DELETE" and name in self.models:
            del self.models[name]
            return 200, done(None)
        if method == "GET" and path == f"/v1/{PARENT}/endpoints":
            wanted = re.findall(r'display_name="([^"]*)"', query.get("filter", [""])[0])
            found = [e for e in self.endpoints.values() if not wanted or e["displayName"] == wanted[0]]
            return 200, {"endpoints": found}
        if method == "POST" and path == f"/v1/{PARENT}/endpoints":
            endpoint = f"{PARENT}/endpoints/{self._id()}"
            self.endpoints[endpoint] = {"name": endpoint, "deployedModels": [], "trafficSplit": {}, **body}
            return 200, done("Endpoint", self.endpoints[endpoint])
        endpoint_name, _, verb = name.partition(":")
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            return 404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}}
        if method == "GET" and not verb:
            return 200, endpoint
        if method == "DELETE" and not verb:
            if endpoint["deployedModels"]:
                return 400, {"error": {"code": 400, "message": "endpoint has deployed models", "status": "FAILED_PRECONDITION"}}
            del self.endpoints[endpoint_name]
            return 200, done(None)
        if verb == "deployModel":
            if self.deploy_error:
                return 200, {"name": f"{endpoint_name}/operations/9", "done": True,
                             "error": {"code": 8, "message": self.deploy_error}}
            deployed = {**body["deployedModel"]}
            endpoint["deployedModels"].append(deployed)
            endpoint["trafficSplit"] = {k: 0 for k in endpoint["trafficSplit"]} | {deployed["id"]: 100}
            return 200, done("DeployModelResponse", {"deployedModel": deployed})
        if verb == "undeployModel":
            gone = body["deployedModelId"]
            split = body.get("trafficSplit", {})
            if endpoint["trafficSplit"].get(gone) and len(endpoint["deployedModels"]) > 1 and not split:
                return 400, {"error": {"code": 400, "message": "model still has traffic", "status": "FAILED_PRECONDITION"}}
            endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != gone]
            endpoint["trafficSplit"] = split
            return 200, done("UndeployModelResponse", {})
        if verb == "predict":
            served = max(endpoint["trafficSplit"], key=endpoint["trafficSplit"].get)
            return 200, {"predictions": self.predict(body["instances"]), "deployedModelId": served}
        return 400, {"error": {"code": 400, "message": f"unexpected {method} {path}"}}


def done(kind: Optional[str], response: Optional[dict] = None) -> dict:
    """A long-running operation that has already finished."""
    any_value = {"@type": "type.googleapis.com/google.protobuf.Empty"} if kind is None else {"@type": V1 + kind, **(response or {})}
    return {"name": f"{PARENT}/operations/1", "done": True, "response": any_value}


@pytest.fixture
def vertex() -> Iterator[Vertex]:
    state = Vertex()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            parts = urlsplit(self.path)
            status, answer = state.handle(self.command, parts.path, parse_qs(parts.query), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


def params(vertex: Vertex, **overrides: Any) -> VertexParams:
    return VertexParams(enabled=True, project="demo-project", region="us-central1", api_endpoint=vertex.url,
                        operation_timeout_seconds=30, **overrides)


def deploy(vertex: Vertex, **overrides: Any) -> VertexDeployment:
    return deploy_version(ARTIFACT, MANIFEST, "linear", 3, params(vertex, **overrides), credentials=AnonymousCredentials())


def test_deploy_uploads_creates_the_endpoint_deploys_and_sends_the_guide_request(vertex: Vertex) -> None:
    deployment = deploy(vertex, machine_type="n1-standard-4", serving_image="example/tf-serving:1")
    endpoint = deployment.endpoint
    assert vertex.calls() == [
        ("POST", f"/v1/{PARENT}/models:upload"),
        ("GET", f"/v1/{PARENT}/endpoints"),
        ("POST", f"/v1/{PARENT}/endpoints"),
        ("POST", f"/v1/{endpoint}:deployModel"),
        ("POST", f"/v1/{endpoint}:predict"),
    ]
    upload, listing, create, deployed, predict = (body for _, _, body in vertex.requests)
    assert upload["model"]["artifactUri"] == ARTIFACT
    assert upload["model"]["containerSpec"] == {"imageUri": "example/tf-serving:1"}
    assert upload["model"]["displayName"] == "linear-v3"
    assert upload["model"]["labels"] == {"freezeflow_model": "linear", "freezeflow_version": "3"}
    assert create["displayName"] == "freezeflow-linear"
    assert deployed["deployedModel"]["model"] == deployment.model
    assert deployed["deployedModel"]["id"] == deployment.deployed_model_id
    assert deployed["deployedModel"]["dedicatedResources"]["machineSpec"] == {"machineType": "n1-standard-4"}
    assert deployed["trafficSplit"] == {"0": 100}
    assert predict == {"instances": [{"inputs": 2.0}, {"inputs": 4.0}, {"inputs": 6.0}]}
    assert deployment.smoke_predictions == [2.0, 3.0, 4.0]
    assert deployment.endpoint_created and deployment.expires_at is None
    assert deployment.predict_url == f"{vertex.url}/v1/{endpoint}:predict"


def test_deploy_reuses_an_endpoint_named_by_id_or_display_name(vertex: Vertex) -> None:
    by_id = vertex.add_endpoint("prod", {})
    deployment = deploy(vertex, endpoint=by_id.rsplit("/", 1)[1])
    assert deployment.endpoint == by_id and not deployment.endpoint_created
    assert vertex.calls()[1] == ("GET", f"/v1/{by_id}")
    vertex.requests.clear()
    by_name = vertex.add_endpoint("ci-smoke", {})
    assert deploy(vertex, endpoint="ci-smoke").endpoint == by_name
    assert ("POST", f"/v1/{PARENT}/endpoints") not in vertex.calls()


def test_a_failed_deploy_deletes_only_the_model_this_run_uploaded(vertex: Vertex) -> None:
    serving = vertex.add_endpoint("prod", {"111": 100})
    vertex.deploy_error = "Machine type n1-standard-2 is out of quota"
    with pytest.raises(DeploymentError) as caught:
        deploy(vertex, endpoint="prod")
    message = str(caught.value)
    assert "out of quota" in message and "was never deployed" in message and "deleted model" in message
    uploaded = vertex.requests[0]
    model = f"{PARENT}/models/{vertex.counter}"
    assert vertex.calls() == [
        ("POST", f"/v1/{PARENT}/models:upload"),
        ("GET", f"/v1/{PARENT}/endpoints"),
        ("POST", f"/v1/{serving}:deployModel"),
        ("GET", f"/v1/{serving}"),  # is our deployed model there? (it is not: nothing to undeploy)
        ("DELETE", f"/v1/{model}"),
    ]
    assert uploaded[2]["model"]["artifactUri"] == ARTIFACT
    assert vertex.endpoints[serving]["trafficSplit"] == {"111": 100}  # the serving model was never touched
    assert vertex.models == {}


def test_a_wrong_smoke_prediction_undeploys_and_deletes_the_endpoint_and_model_it_created(vertex: Vertex) -> None:
    vertex.predict = lambda instances: [0.0 for _ in instances]
    with pytest.raises(DeploymentError, match=r"smoke prediction .* differ from \[2.0, 3.0, 4.0\] by 4"):
        deploy(vertex)
    calls = vertex.calls()
    assert [c[0] for c in calls[-4:]] == ["GET", "POST", "DELETE", "DELETE"]
    endpoint = calls[3][1].removeprefix("/v1/").removesuffix(":deployModel")
    assert calls[-4:] == [
        ("GET", f"/v1/{endpoint}"),
        ("POST", f"/v1/{endpoint}:undeployModel"),
        ("DELETE", f"/v1/{endpoint}"),
        ("DELETE", f"/v1/{PARENT}/models/101"),
    ]
    undeploy_body = vertex.requests[-3][2]
    assert undeploy_body["deployedModelId"] == vertex.requests[3][2]["deployedModel"]["id"]
    assert "trafficSplit" not in undeploy_body  # the last model on the endpoint: the split ends up empty
    assert vertex.endpoints == {} and vertex.models == {}


def test_rollback_on_a_shared_endpoint_gives_the_traffic_back(vertex: Vertex) -> None:
    shared = vertex.add_endpoint("prod", {"111": 70, "222": 30})
    vertex.predict = lambda instances: ["nonsense" for _ in instances]
    with pytest.raises(DeploymentError, match="rollback: undeployed"):
        deploy(vertex, endpoint="prod")
    undeploy_body = next(body for _, path, body in vertex.requests if path.endswith(":undeployModel"))
    assert undeploy_body["trafficSplit"] == {"111": 70, "222": 30}
    assert vertex.endpoints[shared]["trafficSplit"] == {"111": 70, "222": 30}
    assert [d["id"] for d in vertex.endpoints[shared]["deployedModels"]] == ["111", "222"]
    assert not any(method == "DELETE" and path == f"/v1/{shared}" for method, path in vertex.calls())


def test_undeploy_takes_down_exactly_the_deployment_a_record_names(vertex: Vertex) -> None:
    deployment = deploy(vertex, ttl_seconds=3600)
    assert deployment.expires_at is not None
    record = VertexDeployment.model_validate_json(deployment.model_dump_json())  # as the CLI reads it back
    other = vertex.add_endpoint("other", {"555": 100})
    vertex.requests.clear()
    notes = undeploy_deployment(record, credentials=AnonymousCredentials())
    assert vertex.calls() == [
        ("GET", f"/v1/{record.endpoint}"),
        ("POST", f"/v1/{record.endpoint}:undeployModel"),
        ("DELETE", f"/v1/{record.endpoint}"),
        ("DELETE", f"/v1/{record.model}"),
    ]
    assert notes == [f"undeployed {record.deployed_model_id} from {record.endpoint}",
                     f"deleted endpoint {record.endpoint}", f"deleted model {record.model}"]
    assert list(vertex.endpoints) == [other]


def test_undeploy_expired_takes_down_past_ttl_deployments_and_nothing_else(vertex: Vertex) -> None:
    old = deploy(vertex, ttl_seconds=60, endpoint="smoke-old")
    fresh = deploy(vertex, ttl_seconds=7200, endpoint="smoke-fresh")
    keeps = deploy(vertex, endpoint="prod")  # no TTL
    vertex.requests.clear()
    notes = undeploy_expired(params(vertex), now=(old.expires_at or 0) + 1, credentials=AnonymousCredentials())
    assert notes == [f"undeployed {old.deployed_model_id} from {old.endpoint}", f"deleted endpoint {old.endpoint}",
                     f"deleted model {old.model}"]
    assert vertex.requests[0][:2] == ("GET", f"/v1/{PARENT}/models")
    assert set(vertex.endpoints) == {fresh.endpoint, keeps.endpoint}
    assert set(vertex.models) == {fresh.model, keeps.model}


def test_deploy_refuses_what_vertex_cannot_serve_before_any_request(vertex: Vertex) -> None:
    from tasks.core.errors import ParameterError

    with pytest.raises(ParameterError, match="not a gs:// URI"):
        deploy_version("/tmp/models/linear/3", MANIFEST, "linear", 3, params(vertex), credentials=AnonymousCredentials())
    with pytest.raises(ParameterError, match="lacks the signature or validation"):
        deploy_version(ARTIFACT, {"signature": {}}, "linear", 3, params(vertex), credentials=AnonymousCredentials())
    assert vertex.requests == []


def test_vertex_params_need_a_project_when_enabled() -> None:
    from pydantic import ValidationError

    assert VertexParams().enabled is False
    with pytest.raises(ValidationError, match="project is required"):
        VertexParams(enabled=True)
    with pytest.raises(ValidationError, match="max_replica_count"):
        VertexParams(project="demo-project", min_replica_count=3, max_replica_count=1)


@pytest.mark.parametrize("previous, remaining, split", [
    ({"1": 70, "2": 30, "9": 0}, ["1", "2"], {"1": 70, "2": 30}),
    ({"1": 1, "2": 1, "3": 1}, ["1", "2", "3"], {"1": 34, "2": 33, "3": 33}),
    ({"9": 100}, ["1"], {"1": 100}),
    ({"1": 100}, [], {}),
])
def test_traffic_after_undeploy_adds_up_to_100(previous: dict, remaining: list, split: dict) -> None:
    assert traffic_after_undeploy(previous, remaining) == split
