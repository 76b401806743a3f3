"""``prefect.yaml`` as ``prefect deploy`` reads it: one deployment per flow on the process pool, parameters
the flows accept, an inactive nightly schedule, a concurrency limit, a pull step into the repository,
and commented examples for other work pools that are valid once uncommented."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO / "prefect.yaml"
FLOWS = {"publish_model": "flows/publish.py:publish_model",
         "convert_checkpoint": "flows/convert.py:convert_checkpoint",
         "convert_many": "flows/convert_many.py:convert_many",
         "smoke": "flows/smoke.py:smoke"}
EXAMPLE_BEGIN = re.compile(r'^# BEGIN example: (?P<name>[\w-]+) \(work pool type "(?P<type>[\w-]+)"')


def uncomment_examples(text: str) -> tuple[str, dict[str, str]]:
    """The file with every example block uncommented as its header says (delete the leading "# "),
    and each example's work pool type by deployment name."""
    lines, types, inside = [], {}, False
    for number, line in enumerate(text.splitlines(), 1):
        if match := EXAMPLE_BEGIN.match(line):
            types[match["name"]] = match["type"]
            inside = True
        elif line.startswith("# END example"):
            inside = False
        elif inside:
            assert line.startswith("# ") or line == "#", f"prefect.yaml:{number} is not a commented line: {line!r}"
            line = line[2:]
        lines.append(line)
    assert not inside, "an example block has no END marker"
    return "\n".join(lines) + "\n", types


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


@pytest.fixture(scope="module")
def with_examples() -> tuple[dict[str, Any], dict[str, str]]:
    text, types = uncomment_examples(PREFECT_YAML.read_text())
    return yaml.safe_load(text), types


def by_flow(deployments: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``flow/deployment`` -> the deployment, the flow named by loading its entrypoint as Prefect does."""
    from prefect.flows import load_flow_from_entrypoint

    return {f"{load_flow_from_entrypoint(d['entrypoint']).name}/{d['name']}": d for d in deployments}


def worker_variables(pool_type: str) -> dict[str, Any]:
    """The job variables schema of a work pool type, from the worker metadata Prefect bundles (offline)."""
    import prefect

    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template()["variables"]
    path = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    for workers in json.loads(path.read_text()).values():
        if pool_type in workers:
            return workers[pool_type]["default_base_job_configuration"]["variables"]
    raise AssertionError(f"Prefect knows no work pool type {pool_type!r}")


def test_each_flow_has_one_deployment_on_the_process_pool(config: dict[str, Any]) -> None:
    deployments = by_flow(config["deployments"])
    assert sorted(deployments) == ["convert_checkpoint/local", "convert_many/local", "publish_model/local",
                                   "smoke/local"]
    for name, deployment in deployments.items():
        assert deployment["entrypoint"] == FLOWS[name.split("/")[0]]
        assert deployment["work_pool"]["name"] == "freezeflow-local"
        assert "freezeflow" in deployment["tags"], name
        assert len(deployment["description"].split()) >= 20, f"{name}: the UI shows this description"
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert deployment["enforce_parameter_schema"] is True


def test_process_pool_exists_in_prefect_and_its_job_variables_fit_it(config: dict[str, Any]) -> None:
    from prefect.utilities.schema_tools import validate

    for deployment in config["deployments"]:
        job_variables = deployment["work_pool"]["job_variables"]
        validate(job_variables, worker_variables("process"), raise_on_error=True)


def deployment_runs(deployment: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The parameter sets a deployment starts runs with: its own, and each schedule's merged over them."""
    runs = [("parameters", dict(deployment.get("parameters") or {}))]
    for schedule in deployment.get("schedules") or []:
        runs.append((f"schedule {schedule.get('slug')}", {**runs[0][1], **(schedule.get("parameters") or {})}))
    return runs


def test_every_parameter_set_validates_against_its_flows_real_schema(
    with_examples: tuple[dict[str, Any], dict[str, str]],
) -> None:
    """Checked twice: as the server does for `enforce_parameter_schema`, and by the flow's own Pydantic
    models, as a run does (a required parameter left to the run form, like convert's checkpoint, aside)."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate

    config, _ = with_examples
    for deployment in config["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        schema = parameter_schema(flow).model_dump_for_openapi()
        required = set(schema.get("required") or [])
        for label, parameters in deployment_runs(deployment):
            where = f"{flow.name}/{deployment['name']} {label}"
            assert set(parameters) <= set(schema["properties"]), f"{where}: unknown {set(parameters) - set(schema['properties'])}"
            validate(parameters, schema, raise_on_error=True, ignore_required=True)
            placeholders = {name: ["placeholder"] if schema["properties"][name].get("type") == "array" else "placeholder"
                            for name in required - set(parameters)}
            flow.validate_parameters({**placeholders, **parameters})  # raises ParameterTypeError with the reason
    assert {"checkpoint"} == set(parameter_schema(load_flow_from_entrypoint(FLOWS["convert_checkpoint"]))
                                 .model_dump_for_openapi().get("required") or [])
    assert {"sources"} == set(parameter_schema(load_flow_from_entrypoint(FLOWS["convert_many"]))
                              .model_dump_for_openapi().get("required") or [])


def test_a_parameter_the_flow_would_refuse_fails_the_check(config: dict[str, Any]) -> None:
    """The check above can fail: a misspelt nested field and a bad model name are caught."""
    from prefect.exceptions import ParameterTypeError
    from prefect.flows import load_flow_from_entrypoint

    publish = load_flow_from_entrypoint(FLOWS["publish_model"])
    with pytest.raises(ParameterTypeError, match="epoch"):
        publish.validate_parameters({"training": {"epoch": 3}})
    with pytest.raises(ParameterTypeError, match="model_name"):
        publish.validate_parameters({"model_name": "Not A Name"})


def test_publish_model_has_a_nightly_schedule_that_starts_inactive(config: dict[str, Any]) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    deployments = by_flow(config["deployments"])
    [nightly] = deployments["publish_model/local"]["schedules"]
    assert nightly["active"] is False
    assert nightly["slug"] == "nightly"
    schedule = CronSchedule(cron=nightly["cron"], timezone=nightly["timezone"])  # raises on a bad cron
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "UTC")
    assert all(not deployments[name].get("schedules")
               for name in ("convert_checkpoint/local", "convert_many/local", "smoke/local"))


def test_pull_step_sends_runs_to_the_folder_prefect_deploy_ran_in(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The build step's output, templated into the pull step as `prefect deploy` does, is the repository."""
    from prefect.deployments.steps.utility import run_shell_script
    from prefect.utilities.templating import apply_values

    [build] = config["build"]
    step = dict(build["prefect.deployments.steps.run_shell_script"])
    step_id = step.pop("id")
    monkeypatch.chdir(REPO)
    output = asyncio.run(run_shell_script(**step))
    pull = apply_values(config["pull"], {step_id: output})
    assert pull == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]


def test_commented_examples_parse_when_uncommented_and_join_the_deployments(
    with_examples: tuple[dict[str, Any], dict[str, str]],
) -> None:
    config, types = with_examples
    assert types == {"kubernetes": "kubernetes", "cloud-run": "cloud-run-v2", "vertex-ai": "vertex-ai"}
    deployments = by_flow(config["deployments"])
    assert sorted(deployments) == sorted(["convert_checkpoint/local", "convert_many/local", "publish_model/local",
                                          "smoke/local",
                                          "publish_model/kubernetes", "publish_model/cloud-run",
                                          "publish_model/vertex-ai"])
    for name in types:
        example = deployments[f"publish_model/{name}"]
        assert example["parameters"]["destination"].startswith("gs://"), "a container's disk ends with the run"
        assert example["pull"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/freezeflow"}}]
        assert example["concurrency_limit"]["limit"] == 1


def test_example_job_variables_fit_their_work_pool_types(
    with_examples: tuple[dict[str, Any], dict[str, str]],
) -> None:
    from prefect.utilities.schema_tools import validate

    config, types = with_examples
    examples = {d["name"]: d for d in config["deployments"] if d["name"] in types}
    for name, pool_type in types.items():
        job_variables = examples[name]["work_pool"]["job_variables"]
        schema = worker_variables(pool_type)
        unknown = set(job_variables) - set(schema["properties"])
        assert not unknown, f"{name}: {pool_type} pools have no job variables {sorted(unknown)}"
        validate(job_variables, schema, raise_on_error=True)
        assert job_variables["image"], name
