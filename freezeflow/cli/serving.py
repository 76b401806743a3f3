"""The serving commands of ``freezeflow``: ``serve``, ``predict``, ``deploy`` and ``undeploy``.

``freezeflow/cli/app.py`` adds this group's app. TensorFlow, Prefect and the Google clients are
imported inside the commands, so ``--help`` stays instant; every failure prints ``error: <reason>``
on stderr and exits 1.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from freezeflow.cli.common import fail, prepare_environment
from tasks.vertex import defaults as vertex_defaults


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, so a command run twice in one process logs to its own."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (a stopped container, a cancelled CI job) as Ctrl-C: shut down and clean up the same way."""
    raise KeyboardInterrupt


def _logging(level: int = logging.INFO) -> None:
    for name in ("freezeflow.serving", "freezeflow.predict", "freezeflow.vertex"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            logger.addHandler(_StderrHandler())
        logger.propagate = False
    # uvicorn's own start/stop chatter; its warnings (malformed HTTP, say) still show.
    logging.getLogger("uvicorn.error").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)


def serve(
    source: str = typer.Argument(..., help="A version folder (saved_model.pb inside), a model folder of numeric "
                                           "versions, or gs://bucket/prefix/MODEL[/VERSION]."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Name in the URL; default the model folder's name."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 serves other machines too "
                                     "(and then needs --token-file)."),
    port: int = typer.Option(8501, min=0, max=65535, help="Port (TF Serving's REST port by default; 0 picks a free one)."),
    poll_seconds: float = typer.Option(2.0, "--poll-seconds", min=0.1, help="How often to look for a new version."),
    keep_versions: int = typer.Option(2, "--keep-versions", min=1, help="Newest versions kept loaded (the newest answers by default)."),
    max_body_bytes: int = typer.Option(16 * 1024 * 1024, "--max-body-bytes", min=1, help="Larger request bodies get 413."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="A file holding a token: every request must "
                                              "then send 'Authorization: Bearer <token>' (401 otherwise). Required "
                                              "when --host is not loopback."),
    batching: bool = typer.Option(False, "--batching", help="Run concurrent predict requests for the same version and "
                                  "signature as one batch, as TF Serving's --enable_batching does. Only for models "
                                  "whose rows are independent."),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size", min=1, help="With --batching: most rows "
                                                 "(instances) in one batch [default: 64]."),
    batch_timeout_micros: Optional[int] = typer.Option(None, "--batch-timeout-micros", min=0, help="With --batching: "
                                                       "longest wait for a batch to fill, in microseconds [default: 0: "
                                                       "requests that arrive while a batch runs form the next one]."),
    max_enqueued_batches: Optional[int] = typer.Option(None, "--max-enqueued-batches", min=1, help="With --batching: "
                                                       "most batches waiting for the model, the one filling included; "
                                                       "a request past them is refused at once with 503, as TF "
                                                       "Serving does [default: 10]."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request."),
) -> None:
    """Serve a published model with TF Serving's REST API until interrupted; new versions are picked up as they appear."""
    prepare_environment()
    _logging(logging.DEBUG if verbose else logging.INFO)
    from tasks.core.errors import FreezeflowError
    from tasks.serving.access import read_token_file, require_token_off_loopback
    from tasks.serving.batching import (
        DEFAULT_BATCH_TIMEOUT_MICROS,
        DEFAULT_MAX_BATCH_SIZE,
        DEFAULT_MAX_ENQUEUED_BATCHES,
        BatchingOptions,
    )
    from tasks.serving.server import open_server
    from tasks.serving.sources import check_servable_name

    if not batching and (max_batch_size is not None or batch_timeout_micros is not None
                         or max_enqueued_batches is not None):
        fail("--max-batch-size, --batch-timeout-micros and --max-enqueued-batches tune --batching; add --batching")
    try:  # every refusal that needs no model comes before loading one
        if model_name is not None:
            check_servable_name(model_name)
        token = read_token_file(token_file) if token_file is not None else None
        require_token_off_loopback(host, token)
        options = BatchingOptions(
            max_batch_size=DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else max_batch_size,
            batch_timeout_micros=DEFAULT_BATCH_TIMEOUT_MICROS if batch_timeout_micros is None else batch_timeout_micros,
            max_enqueued_batches=DEFAULT_MAX_ENQUEUED_BATCHES if max_enqueued_batches is None else max_enqueued_batches,
        ) if batching else None
        server = open_server(source, model_name=model_name, host=host, port=port, poll_seconds=poll_seconds,
                             keep_versions=keep_versions, max_body_bytes=max_body_bytes, batching=options, token=token)
    except (FreezeflowError, ImportError) as exc:
        fail(exc)
    repository = server.repository
    versions = repository.versions()
    if not versions:
        errors = [s["status"]["error_message"] for s in repository.status()["model_version_status"]
                  if s["status"]["error_message"]]
        if errors or not repository.source.polls:
            server.close()
            fail(f"{source}: no version could be loaded: {errors[0] if errors else 'no saved_model.pb'}")
        typer.echo(f"no complete version under {source} yet; waiting for one (polling every {poll_seconds:g} s)", err=True)
    shown = ", ".join(map(str, reversed(versions))) or "none yet"
    typer.echo(f"serving {repository.name} (versions {shown}) from {repository.source.description}")
    typer.echo(f"  {server.model_url}:predict", err=False)
    if options is not None:
        typer.echo(f"  batching: up to {options.max_batch_size} rows, waiting at most "
                   f"{options.batch_timeout_micros} µs for a batch to fill, at most {options.max_enqueued_batches} "
                   "batches queued (then 503)", err=True)
    if token is not None:
        typer.echo(f"  every request needs 'Authorization: Bearer <the token in {token_file}>'", err=True)
    sys.stdout.flush()

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
    typer.echo("stopped", err=True)


def predict(
    url: str = typer.Argument(..., help="http://HOST:PORT/v1/models/NAME[/versions/N][:predict], or a Vertex AI "
                                        "endpoint URL (https://REGION-aiplatform.googleapis.com/v1/projects/…/endpoints/ID)."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Instances: a JSON list, {\"instances\": [...]}, "
                                                                   "or JSON lines; '-' reads stdin."),
    instance: Optional[list[str]] = typer.Option(None, "--instance", "-i", help="One instance as JSON, e.g. "
                                                                               "'{\"inputs\": 6.0}' (repeatable)."),
    signature_name: Optional[str] = typer.Option(None, "--signature-name", help="Signature; default serving_default."),
    max_request_bytes: int = typer.Option(1_500_000, "--max-request-bytes", min=64,
                                          help="Split the instances into requests no larger than this (Vertex AI: 1.5 MB)."),
    timeout: float = typer.Option(60.0, min=0.1, help="Seconds the whole command may wait for answers, every "
                                  "request and retry included; past it, it stops with an error."),
    attempts: int = typer.Option(5, min=1, help="Tries per request; 429, 5xx and dropped connections are retried."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="A file holding the token of a server "
                                              "started with --token-file; sent as 'Authorization: Bearer <token>'."),
) -> None:
    """Send instances to a prediction endpoint and print {"predictions": [...]}, in the order of the instances."""
    prepare_environment()
    _logging(logging.WARNING)
    from tasks.core.errors import FreezeflowError
    from tasks.serving.access import read_token_file
    from tasks.serving.predict import predict_instances, read_instances

    if (file is None) == (not instance):
        raise typer.BadParameter("give instances with either --file or --instance", param_hint="--file / --instance")
    try:
        token = read_token_file(token_file) if token_file is not None else None
        if file is not None:
            instances = read_instances(file)
        else:
            try:
                instances = [json.loads(text) for text in instance or []]
            except ValueError as exc:
                raise typer.BadParameter(f"not JSON: {exc}", param_hint="--instance") from exc
        predictions = predict_instances(url, instances, signature_name=signature_name,
                                        max_request_bytes=max_request_bytes, timeout=timeout, max_attempts=attempts,
                                        token=token)
    except (FreezeflowError, ImportError) as exc:
        fail(exc)
    typer.echo(json.dumps({"predictions": predictions}))


def deploy(
    version_uri: str = typer.Argument(..., help="A published version: gs://bucket/prefix/MODEL/VERSION."),
    project: str = typer.Option(..., "--project", help="Google Cloud project ID."),
    region: str = typer.Option(vertex_defaults.REGION, "--region", help="Vertex AI region."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Endpoint ID, resource name or display name; "
                                                                    "default display name freezeflow-MODEL."),
    machine_type: str = typer.Option(vertex_defaults.MACHINE_TYPE, "--machine-type", help="Machine type of the serving nodes."),
    image: Optional[str] = typer.Option(None, "--image", help="Serving container image (default: prebuilt TF CPU)."),
    ttl: Optional[int] = typer.Option(None, "--ttl", min=60, help="Seconds until 'freezeflow undeploy --expired' may "
                                                                  "take this deployment down."),
    record: Path = typer.Option(Path("vertex-deployment.json"), "--record",
                                help="Where to write what was deployed, for 'freezeflow undeploy RECORD'."),
    api_endpoint: Optional[str] = typer.Option(None, "--api-endpoint", help="Vertex AI API host (default REGION-aiplatform.googleapis.com)."),
) -> None:
    """Deploy a published gs:// version to a Vertex AI endpoint and send it the guide's request; roll back on failure."""
    prepare_environment()
    _logging()
    from pydantic import ValidationError

    from tasks.core.errors import FreezeflowError
    from tasks.vertex.deploy import DEFAULT_SERVING_IMAGE, VertexParams, deploy_published

    try:
        params = VertexParams(enabled=True, project=project, region=region, endpoint=endpoint,
                              machine_type=machine_type, serving_image=image or DEFAULT_SERVING_IMAGE,
                              ttl_seconds=ttl, api_endpoint=api_endpoint)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"parameter {'.'.join(str(p) for p in first.get('loc', ())) or 'vertex'}: {first.get('msg')}")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a cancelled job still rolls back what it deployed
    try:
        deployment = deploy_published(version_uri, params)
    except (FreezeflowError, ImportError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        fail("interrupted; what this deploy had made was rolled back (see the log above)")
    finally:
        signal.signal(signal.SIGTERM, previous)
    record.write_text(deployment.model_dump_json(indent=2) + "\n")
    typer.echo(f"deployed {deployment.model} to {deployment.endpoint} as {deployment.deployed_model_id}")
    typer.echo(f"  smoke predictions: {json.dumps(deployment.smoke_predictions)}")
    typer.echo(f"  predict: {deployment.predict_url}")
    typer.echo(f"  record: {record}" + (f" (expires at Unix time {deployment.expires_at})" if deployment.expires_at else ""))


def undeploy(
    record: Optional[Path] = typer.Argument(None, exists=True, dir_okay=False,
                                            help="The record 'freezeflow deploy' wrote: take down exactly that deployment."),
    expired: bool = typer.Option(False, "--expired", help="Instead: take down every deployment past its --ttl."),
    project: Optional[str] = typer.Option(None, "--project", help="With --expired: Google Cloud project ID."),
    region: str = typer.Option(vertex_defaults.REGION, "--region", help="With --expired: Vertex AI region."),
    api_endpoint: Optional[str] = typer.Option(None, "--api-endpoint", help="Vertex AI API host."),
) -> None:
    """Undeploy a Vertex AI deployment (and delete the model and endpoint it made), or every expired one."""
    prepare_environment()
    _logging()
    from pydantic import ValidationError

    from tasks.core.errors import FreezeflowError
    from tasks.vertex.deploy import VertexDeployment, VertexParams, undeploy_deployment, undeploy_expired

    if (record is None) == (not expired):
        raise typer.BadParameter("give either a RECORD or --expired", param_hint="RECORD / --expired")
    try:
        if record is not None:
            notes = undeploy_deployment(VertexDeployment.model_validate_json(record.read_text()))
        else:
            notes = undeploy_expired(VertexParams(project=project, region=region, api_endpoint=api_endpoint))
    except ValidationError as exc:
        fail(f"{record or 'parameters'}: {exc.errors()[0].get('msg')}")
    except (FreezeflowError, ImportError) as exc:
        fail(exc)
    for note in notes or ["nothing to take down"]:
        typer.echo(note)


app = typer.Typer()
for command in (serve, predict, deploy, undeploy):
    app.command()(command)
