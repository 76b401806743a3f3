"""The local server speaks TF Serving's REST API: the guide's request, versions, errors, concurrency, the serving check."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tasks.core.records import ExportedModel
from tests.support.serving import publish

GUIDE = {2.0: 2.0, 4.0: 3.0, 6.0: 4.0}


@pytest.fixture(scope="module")
def two_signature_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF2 SavedModel with two inputs and two outputs (serving_default) and a string signature 'text'."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="a"),
                                      tf.TensorSpec([None, 2], tf.int32, name="b")])
        def arithmetic(self, a: Any, b: Any) -> Any:
            return {"sum": a + tf.cast(tf.reduce_sum(b, axis=1), tf.float32), "scaled": b * 10}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def text(self, text: Any) -> Any:
            return {"length": tf.strings.length(text), "echo_bytes": text, "upper": tf.strings.upper(text)}

    module = Module()
    folder = tmp_path_factory.mktemp("two-signatures") / "1"
    tf.saved_model.save(module, str(folder), signatures={
        "serving_default": module.arithmetic.get_concrete_function(), "text": module.text.get_concrete_function()})
    return folder


@pytest.fixture
def server(model_dir: Path) -> Iterator[Any]:
    from tasks.serving.server import open_server

    with open_server(str(model_dir), port=0, poll_seconds=0.1).start() as running:
        yield running


def wait_for(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_guide_request_gets_the_guide_answer(server: Any, client: httpx.Client) -> None:
    answer = client.post(f"{server.model_url}:predict", json={"instances": [{"inputs": 6.0}]})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"predictions": [4.0]}
    bare = client.post(f"{server.model_url}:predict", json={"instances": list(GUIDE)})
    assert bare.json() == {"predictions": list(GUIDE.values())}


def test_columnar_request_is_answered_with_outputs(server: Any, client: httpx.Client) -> None:
    answer = client.post(f"{server.model_url}:predict", json={"inputs": [2.0, 4.0]})
    assert answer.json() == {"outputs": [2.0, 3.0]}
    named = client.post(f"{server.model_url}:predict", json={"inputs": {"inputs": [6.0]}})
    assert named.json() == {"outputs": [4.0]}


def test_float32_outputs_are_printed_as_their_shortest_text(server: Any, client: httpx.Client) -> None:
    # 0.5 * 0.1 + 1 in float32 is 1.04999995…; TF Serving prints it as 1.05, not as its float64 widening.
    answer = client.post(f"{server.model_url}:predict", content=json.dumps({"instances": [0.1]}))
    assert answer.text == '{"predictions":[1.05]}'


def test_status_and_metadata_answer_as_tf_serving_does(server: Any, client: httpx.Client) -> None:
    status = client.get(server.model_url)
    assert status.json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    for url in (f"{server.model_url}/metadata", f"{server.model_url}/versions/1/metadata"):
        metadata = client.get(url).json()
        assert metadata["model_spec"] == {"name": "linear", "signature_name": "", "version": "1"}
        signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["method_name"] == "tensorflow/serving/predict"
        assert signature["inputs"]["inputs"] == {
            "name": "x:0", "dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}}
        assert signature["outputs"]["outputs"]["dtype"] == "DT_FLOAT"


def test_new_version_is_picked_up_without_restart_and_older_stays_addressable(
    server: Any, model_dir: Path, exports: dict[str, ExportedModel], client: httpx.Client
) -> None:
    publish(model_dir, 2, exports["double"])
    wait_for(lambda: server.repository.versions() == [1, 2])
    assert client.post(f"{server.model_url}:predict", json={"instances": [{"inputs": 6.0}]}).json() == {"predictions": [12.0]}
    pinned = client.post(f"{server.model_url}/versions/1:predict", json={"instances": [{"inputs": 6.0}]})
    assert pinned.json() == {"predictions": [4.0]}
    states = client.get(server.model_url).json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in states] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]


def test_versions_beyond_keep_versions_are_unloaded(
    server: Any, model_dir: Path, exports: dict[str, ExportedModel], client: httpx.Client
) -> None:
    publish(model_dir, 2, exports["double"])
    publish(model_dir, 3, exports["guide"])
    wait_for(lambda: server.repository.versions() == [2, 3])
    states = {s["version"]: s["state"] for s in client.get(server.model_url).json()["model_version_status"]}
    assert states == {"3": "AVAILABLE", "2": "AVAILABLE", "1": "END"}
    gone = client.post(f"{server.model_url}/versions/1:predict", json={"instances": [1.0]})
    assert gone.status_code == 404 and "Specific(linear, 1)" in gone.json()["error"]  # TF Serving: NOT_FOUND


def test_incomplete_version_is_never_loaded_and_a_bare_savedmodel_is(
    server: Any, model_dir: Path, exports: dict[str, ExportedModel], client: httpx.Client
) -> None:
    half = model_dir / "5"
    (half / "variables").mkdir(parents=True)  # a copy in progress: no saved_model.pb, no manifest yet
    shutil.copy(exports["guide"].artifact.path("variables/variables.index"), half / "variables")
    publish(model_dir, 4, exports["double"], manifest=False)  # TF Serving's layout: saved_model.pb, no manifest
    wait_for(lambda: 4 in server.repository.versions())
    # A refresh of our own, run to its end (refreshes take turns), sees the half-copied folder: no sleeping
    # for "a few polls" and hoping one of them happened.
    server.repository.refresh()
    assert 5 not in server.repository.versions()
    assert client.post(f"{server.model_url}:predict", json={"instances": [1.0]}).json() == {"predictions": [2.0]}


def test_version_that_fails_to_load_is_reported_and_the_older_keeps_serving(
    server: Any, model_dir: Path, client: httpx.Client
) -> None:
    broken = model_dir / ".staging-9"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    (broken / "manifest.json").write_text("{}")
    os.rename(broken, model_dir / "9")
    wait_for(lambda: client.get(f"{server.model_url}/versions/9").json().get("model_version_status", [{}])[0].get("state") == "END")
    status = client.get(f"{server.model_url}/versions/9").json()["model_version_status"][0]
    assert status["status"]["error_code"] == "UNKNOWN" and status["status"]["error_message"]
    assert client.post(f"{server.model_url}:predict", json={"instances": [6.0]}).json() == {"predictions": [4.0]}


@pytest.mark.parametrize(
    "body, status, says",
    [
        (b'{"instances": [6.0', 400, "JSON Parse error"),
        (b'[6.0]', 400, "not an object"),
        (b'{"instances": [{"x": 6.0}]}', 400, "unknown input 'x'"),
        (b'{"instances": ["six"]}', 400, "float32 takes numbers"),
        (b'{"instances": [true]}', 400, "float32 takes numbers"),
        (b'{"instances": [[6.0]]}', 400, "shape [1]"),
        (b'{"instances": [[1.0, 2.0], [3.0]]}', 400, "ragged"),
        (b'{"instances": [{"b64": "AAAA"}]}', 400, "only for DT_STRING"),
        (b'{"instances": [6.0], "signature_name": "nope"}', 400, '"nope" not found'),
        (b'{"instances": [6.0], "inputs": [6.0]}', 400, "both"),
        (b'{"signature_name": "serving_default"}', 400, "Missing 'inputs' or 'instances'"),
        (b'{"instances": []}', 400, "empty"),
        (b'{"instances": [6.0, {"inputs": 1.0}]}', 400, "mixes"),
    ],
)
def test_bad_request_gets_tf_serving_error_shape_and_server_keeps_serving(
    server: Any, client: httpx.Client, body: bytes, status: int, says: str
) -> None:
    answer = client.post(f"{server.model_url}:predict", content=body)
    assert answer.status_code == status
    assert set(answer.json()) == {"error"}
    assert says in answer.json()["error"]
    assert client.post(f"{server.model_url}:predict", json={"instances": [6.0]}).json() == {"predictions": [4.0]}


def test_unknown_version_and_unknown_model_are_404_as_tf_serving_answers_not_found(
    server: Any, client: httpx.Client
) -> None:
    version = client.post(f"{server.model_url}/versions/99:predict", json={"instances": [6.0]})
    assert version.status_code == 404
    assert version.json() == {"error": "Servable not found for request: Specific(linear, 99); loaded versions: 1"}
    metadata = client.get(f"{server.model_url}/versions/99/metadata")
    assert metadata.status_code == 404 and metadata.json() == version.json()
    status = client.get(f"{server.model_url}/versions/99")
    assert status.status_code == 404 and status.json() == {"error": "Could not find version 99 of model linear"}
    model = client.post(f"{server.url}/v1/models/other:predict", json={"instances": [6.0]})
    assert model.status_code == 404 and model.json() == {"error": "Servable not found for request: Latest(other)"}
    assert client.get(f"{server.url}/v1/models/other").status_code == 404
    assert client.get(f"{server.url}/healthz").status_code == 404


def test_body_over_the_limit_is_413_and_the_next_request_is_served(model_dir: Path, client: httpx.Client) -> None:
    from tasks.serving.server import open_server

    with open_server(str(model_dir), port=0, max_body_bytes=1000).start() as small:
        big = client.post(f"{small.model_url}:predict", json={"instances": [1.0] * 1000})
        assert big.status_code == 413 and "larger than the limit of 1000 bytes" in big.json()["error"]
        assert client.post(f"{small.model_url}:predict", json={"instances": [6.0]}).json() == {"predictions": [4.0]}


def test_multiple_inputs_and_outputs_in_row_and_columnar_form(two_signature_model: Path, client: httpx.Client) -> None:
    from tasks.serving.server import open_server

    with open_server(str(two_signature_model), model_name="multi", port=0).start() as srv:
        rows = client.post(f"{srv.model_url}:predict", json={"instances": [{"a": 1.0, "b": [1, 2]}, {"a": 0.5, "b": [0, 0]}]})
        assert rows.json() == {"predictions": [{"scaled": [10, 20], "sum": 4.0}, {"scaled": [0, 0], "sum": 0.5}]}
        columns = client.post(f"{srv.model_url}:predict", json={"inputs": {"a": [1.0], "b": [[3, 4]]}})
        assert columns.json() == {"outputs": {"scaled": [[30, 40]], "sum": [8.0]}}
        missing = client.post(f"{srv.model_url}:predict", json={"instances": [{"a": 1.0}]})
        assert missing.status_code == 400 and "lacks input 'b'" in missing.json()["error"]
        fraction = client.post(f"{srv.model_url}:predict", json={"instances": [{"a": 1.0, "b": [1.5, 2]}]})
        assert fraction.status_code == 400 and "not a whole number" in fraction.json()["error"]


def test_string_signature_takes_b64_and_answers_bytes_outputs_in_b64(two_signature_model: Path, client: httpx.Client) -> None:
    from tasks.serving.server import open_server

    raw = b"\x00\xffbin"
    with open_server(str(two_signature_model), model_name="multi", port=0).start() as srv:
        answer = client.post(f"{srv.model_url}:predict", json={
            "signature_name": "text", "instances": [{"b64": base64.b64encode(raw).decode()}, "héllo"]})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["length"] for p in predictions] == [5, 6]
        assert predictions[0]["echo_bytes"] == {"b64": base64.b64encode(raw).decode()}
        assert predictions[1]["echo_bytes"] == {"b64": base64.b64encode("héllo".encode()).decode()}
        assert predictions[1]["upper"] == "HéLLO"  # text outputs stay text
        bad = client.post(f"{srv.model_url}:predict", json={"signature_name": "text", "instances": [{"b64": "!!"}]})
        assert bad.status_code == 400 and "base64" in bad.json()["error"]


def test_sixty_four_concurrent_clients_all_get_their_own_answers(server: Any) -> None:
    errors: list[str] = []

    def one_client(index: int) -> None:
        with httpx.Client(timeout=60) as own:
            for step in range(5):
                x = float(index * 10 + step)
                got = own.post(f"{server.model_url}:predict", json={"instances": [{"inputs": x}]}).json()
                if got != {"predictions": [0.5 * x + 1.0]}:
                    errors.append(f"{x}: {got}")

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert not any(t.is_alive() for t in threads)


def test_serving_check_passes_with_the_checkpoint_outputs(exports: dict[str, ExportedModel]) -> None:
    from tasks.serving.server import serving_check

    result = serving_check(exports["guide"], list(GUIDE), list(GUIDE.values()), rtol=0.0, atol=1e-6)
    assert result.name == "serving" and result.passed, result.detail
    assert "served SavedModel matches checkpoint: max |difference| 0," in result.detail


def test_serving_check_fails_with_the_reason_when_answers_differ(exports: dict[str, ExportedModel]) -> None:
    from tasks.serving.server import serving_check

    result = serving_check(exports["double"], list(GUIDE), list(GUIDE.values()), rtol=1e-4, atol=1e-3)
    assert not result.passed
    assert "served SavedModel differs from checkpoint by 8 at [2] (worst element [2]: 12 vs 4;" in result.detail
    assert "3 of 3 elements past rtol 0.0001, atol 0.001" in result.detail


def test_serving_check_fails_on_inputs_the_signature_refuses(exports: dict[str, ExportedModel]) -> None:
    from tasks.serving.server import serving_check

    result = serving_check(exports["guide"], ["two"], [2.0], rtol=0.0, atol=1e-3)
    assert not result.passed and "answered 400" in result.detail and "float32 takes numbers" in result.detail


def test_serving_check_fails_when_the_savedmodel_does_not_load(exports: dict[str, ExportedModel], tmp_path: Path) -> None:
    from tasks.core.records import Artifact
    from tasks.serving.server import serving_check

    folder = tmp_path / "1"
    shutil.copytree(exports["guide"].artifact.path(), folder)
    (folder / "variables" / "variables.index").write_bytes(b"truncated")
    broken = exports["guide"].model_copy(update={"artifact": Artifact.of(folder)})
    result = serving_check(broken, [2.0], [2.0], rtol=0.0, atol=1e-3)
    assert not result.passed and result.detail.startswith("the SavedModel does not load for serving")


def test_serving_a_destination_root_names_the_model_folder_to_serve(model_dir: Path) -> None:
    from tasks.core.errors import ParameterError
    from tasks.serving.server import open_server

    with pytest.raises(ParameterError, match=r"holds models \(linear\).*published/linear"):
        open_server(str(model_dir.parent), port=0)


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.gcs_support import Emulator

    server = Emulator(tmp_path_factory.mktemp("gcs") / "root").start()
    yield server
    server.stop()


def publish_to_gcs(uri: str, exported: ExportedModel) -> int:
    from tasks.storage.base import PublishFile
    from tasks.storage.destinations import open_destination

    files = [PublishFile(source=exported.artifact.path(f.path), name=f.path, sha256=f.sha256, size=f.size)
             for f in exported.artifact.files]
    return open_destination(uri).publish("linear", files, {"note": "test"}).version


def test_serving_from_gcs_downloads_verified_versions_and_picks_up_new_ones(
    gcs_emulator: Any, exports: dict[str, ExportedModel], monkeypatch: pytest.MonkeyPatch, client: httpx.Client,
    workspace_home: Path,
) -> None:
    import uuid

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from tasks.serving.server import open_server

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    bucket = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options=ClientOptions(api_endpoint=gcs_emulator.url)).create_bucket(
        f"ff-{uuid.uuid4().hex[:16]}")
    root = f"gs://{bucket.name}/models"
    assert publish_to_gcs(root, exports["guide"]) == 1
    with open_server(f"{root}/linear", port=0, poll_seconds=0.2).start() as srv:
        assert srv.model_url.endswith("/v1/models/linear")
        assert client.post(f"{srv.model_url}:predict", json={"instances": [{"inputs": 6.0}]}).json() == {"predictions": [4.0]}
        cached = list((workspace_home / "serving-cache").glob("*/saved_model.pb"))
        assert len(cached) == 1 and (cached[0].parent / "manifest.json").is_file()
        assert publish_to_gcs(root, exports["double"]) == 2
        wait_for(lambda: srv.repository.versions() == [1, 2])
        assert client.post(f"{srv.model_url}:predict", json={"instances": [6.0]}).json() == {"predictions": [12.0]}
    # An object changed after publishing does not get served: its digest no longer matches the manifest.
    bucket.blob("models/linear/1/variables/variables.index").upload_from_string(b"tampered")
    monkeypatch.setenv("FREEZEFLOW_HOME", str(workspace_home / "fresh"))  # an empty cache
    with open_server(f"{root}/linear/1", port=0).start() as pinned:
        status = pinned.repository.status()["model_version_status"][0]
        assert status["state"] == "END" and "does not hold the digest its manifest records" in status["status"]["error_message"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_get_400_with_tf_servings_json_error(server: Any, client: httpx.Client, method: str) -> None:
    answer = client.request(method, f"{server.model_url}:predict", json={"instances": [6.0]})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": f"Malformed request: {method} /v1/models/linear:predict"}
    assert client.post(f"{server.model_url}:predict", json={"instances": [6.0]}).json() == {"predictions": [4.0]}


def test_head_gets_400_and_no_body(server: Any, client: httpx.Client) -> None:
    # HTTP forbids a body in the answer to HEAD; the status and headers are the same as for the other methods.
    answer = client.head(server.model_url)
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/json"
    assert answer.content == b""


def test_a_chunked_body_is_read_and_limited_like_any_other(model_dir: Path, client: httpx.Client) -> None:
    from tasks.serving.server import open_server

    def chunks(total: int) -> Iterator[bytes]:
        body = json.dumps({"instances": [6.0] * total}).encode()
        for start in range(0, len(body), 7):
            yield body[start:start + 7]

    with open_server(str(model_dir), port=0, max_body_bytes=1000).start() as small:
        fits = client.post(f"{small.model_url}:predict", content=chunks(3))
        assert fits.json() == {"predictions": [4.0, 4.0, 4.0]}
        big = client.post(f"{small.model_url}:predict", content=chunks(1000))
        assert big.status_code == 413 and "larger than the limit of 1000 bytes" in big.json()["error"]


def test_the_server_module_imports_neither_prefect_nor_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import sys, tasks.serving.server, tasks.serving.batching, tasks.serving.access; "
            "print([m for m in ('prefect', 'tensorflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
