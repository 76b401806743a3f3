"""Ctrl-C and SIGTERM during a ``freezeflow run``: the process ends within 5 s, its flow run is Cancelled in the
API, no process of the run is left, nothing is half-published, and the next run resumes from the cache.

The runs use the local server that stays up (one for the module, in ``tmp``, stopped at the end), a
real TensorFlow model and, for the upload, a real fake-gcs-server behind the fault proxy, which sends
the signal when the CLI's upload of ``saved_model.pb`` reaches it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional

import psutil
import pytest

from freezeflow.cli import local_server
from tests.gcs_support import Emulator, Fault, FaultProxy

REPO = Path(__file__).resolve().parents[3]
BOUND = 5.0  # seconds from the signal to the process's exit (issue 13)
# The CLI marks the run Cancelled; on a loaded machine the API may not confirm within the CLI's bound, and
# the CLI says it "left Crashed" (Prefect's engine reports the crash): the test then reads what the API holds.
FLOW_RUN = re.compile(r"flow run ([0-9a-f-]{36}) (?:marked Cancelled|left Crashed)")
FINAL = ("Cancelled", "Crashed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_server.ServerRecord]:
    """One local server for the module's runs, in its own home; stopped at the end."""
    home = tmp_path_factory.mktemp("interrupt-server")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREEZEFLOW_SERVER_HOME", str(home))
        patch.delenv("PREFECT_API_URL", raising=False)
        connection = local_server.connect()
        try:
            connection.ready()
            yield connection.record
        finally:
            local_server.stop_process(connection.record.pid)
            local_server.remove_record()


class Run:
    """A ``freezeflow run`` (or another ``command``) in its own process group, as a shell runs a job; its
    output read line by line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str],
                 command: tuple[str, ...] = ("run", "--verbose")) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
        environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO), **env})
        # run --verbose: the test follows Prefect's progress lines, which a plain run keeps in its log file.
        self.process = subprocess.Popen([sys.executable, "-m", "freezeflow", *command, *args], cwd=cwd,
                                        env=environment,
                                        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the run ended before printing {text!r}:\n" + "".join(self.output)[-3000:])
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout:g} s:\n" + "".join(self.output)[-3000:])

    def finish(self, timeout: float = 600.0) -> str:
        self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.output.append(line)
        return "".join(self.output)


def send(process: subprocess.Popen, how: str) -> None:
    """Ctrl-C reaches the whole foreground process group; SIGTERM (kill PID) only the process."""
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        os.kill(process.pid, signal.SIGTERM)


EXIT_CODES = {"ctrl-c": 130, "sigterm": 143}


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(processes: list[psutil.Process]) -> list[int]:
    return [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def flow_run_state(api_url: str, output: str) -> str:
    """The flow run's state name, read back from the API by the id the CLI printed."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    found = FLOW_RUN.search(output)
    assert found, output[-3000:]
    deadline = time.monotonic() + 15  # a state change sent just before the CLI exited may land a moment later
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            name = client.read_flow_run(uuid.UUID(found.group(1))).state.name
            if name in FINAL or time.monotonic() > deadline:
                return name
            time.sleep(0.5)


def subflow_run_states(api_url: str, output: str) -> list[str]:
    """The state names of the subflow runs of the flow run the CLI printed, read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    found = FLOW_RUN.search(output)
    assert found, output[-3000:]
    children = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[uuid.UUID(found.group(1))]))
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return [run.state.name for run in client.read_flow_runs(flow_run_filter=children)]


def assert_stopped_in_time(run: Run, how: str, signalled_at: float, children: list[psutil.Process],
                           next_run: str = "running it again resumes there") -> str:
    try:
        run.process.wait(timeout=30)
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
    took = time.monotonic() - signalled_at
    output = run.finish()
    assert took <= BOUND, f"exit {took:.1f} s after the signal:\n{output[-3000:]}"
    assert run.process.returncode == EXIT_CODES[how], output[-3000:]
    assert alive(children) == []
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: interrupted by {'SIGINT (Ctrl-C)' if how == 'ctrl-c' else 'SIGTERM'}; flow run ")
    assert "nothing is half-published" in last and next_run in last
    return output


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_during_training_stops_the_run_within_5_s_and_cancels_its_flow_run(
    how: str, server: local_server.ServerRecord, tmp_path: Path
) -> None:
    env = {"FREEZEFLOW_SERVER_HOME": str(Path(server.log).parent)}
    run = Run(["--epochs", "1000000", "--dest", str(tmp_path / "published")], cwd=tmp_path, env=env)
    run.wait_for("epoch 1/1000000")  # training has started; it would go on for many minutes
    children = descendants(run.process.pid)
    signalled_at = time.monotonic()
    send(run.process, how)
    output = assert_stopped_in_time(run, how, signalled_at, children)
    assert flow_run_state(server.url, output) in FINAL
    assert not (tmp_path / "published" / "linear").exists()
    assert local_server.process_alive(server.pid)  # the shared server is not part of the run: it stays up


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_during_smoke_stops_it_within_5_s_and_cancels_its_flow_run(
    how: str, server: local_server.ServerRecord, tmp_path: Path
) -> None:
    env = {"FREEZEFLOW_SERVER_HOME": str(Path(server.log).parent)}
    junit = tmp_path / "reports" / "smoke.xml"
    run = Run(["--epochs", "1000000", "--dest", str(tmp_path / "published"), "--junit", str(junit)], cwd=tmp_path,
              env=env, command=("smoke",))
    run.wait_for("epoch 1/1000000")  # the smoke flow's training has started; it would go on for many minutes
    children = descendants(run.process.pid)
    signalled_at = time.monotonic()
    send(run.process, how)
    output = assert_stopped_in_time(run, how, signalled_at, children, next_run="running it again starts over")
    assert flow_run_state(server.url, output) in FINAL
    # smoke runs publish_model as a subflow: that run is over too (the engine marks it Crashed), not left Running.
    subflows = subflow_run_states(server.url, output)
    assert subflows and all(state in ("Cancelled", "Crashed") for state in subflows), subflows
    assert "smoke passed" not in output and "smoke FAILED" not in output  # no summary of a run that did not end
    # CI reads the report: an interrupted smoke is a failed testcase with the reason, not a missing file.
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failed = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == ["flow"]
    message = failed[0].find("failure").get("message")  # type: ignore[union-attr]
    signal_name = "SIGINT (Ctrl-C)" if how == "ctrl-c" else "SIGTERM"
    assert message.startswith(f"Interrupted: by {signal_name}; flow run "), message
    assert not (tmp_path / "published" / "smoke").exists()
    assert local_server.process_alive(server.pid)


# A TF2 model's freeze rebuilds it from its entrypoint (epochs=0) before restoring the checkpoint into it.
# This entrypoint is the guide's model, but while the gate file exists its rebuild inside the freeze
# stage takes as long as a large model's would: the test knows the stage is mid-way, and the entrypoint
# file (part of every stage's key) stays the same for the run that resumes.
SLOW_FREEZE_ENTRYPOINT = """
import os
import time
from pathlib import Path

from tasks.tf.entrypoints import linear_model


def model(ctx):
    gate = Path(os.environ["FREEZE_GATE"])
    if ctx.epochs == 0 and gate.exists():
        from prefect.context import TaskRunContext

        run = TaskRunContext.get()
        if run is not None and run.task.name == "freeze":
            Path(str(gate) + ".reached").touch()
            while gate.exists():
                time.sleep(0.05)
    return linear_model(ctx)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_during_freeze_stops_the_run_within_5_s_and_the_next_run_resumes_from_the_cache(
    how: str, server: local_server.ServerRecord, tmp_path: Path
) -> None:
    (tmp_path / "slow_freeze.py").write_text(SLOW_FREEZE_ENTRYPOINT)
    gate = tmp_path / "freeze.gate"
    gate.touch()
    dest = tmp_path / "published"
    env = {"FREEZEFLOW_SERVER_HOME": str(Path(server.log).parent), "FREEZE_GATE": str(gate)}
    args = ["--entrypoint", "slow_freeze.py:model", "--format", "tf2", "--epochs", "50",
            "--seed", str(uuid.uuid4().int % 10**6), "--model-name", "slow", "--dest", str(dest)]
    run = Run(args, cwd=tmp_path, env=env)
    reached = Path(str(gate) + ".reached")
    deadline = time.monotonic() + 600
    while not reached.exists() and run.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reached.exists(), run.finish()[-3000:]  # the freeze stage is running, inside the model's rebuild
    children = descendants(run.process.pid)
    signalled_at = time.monotonic()
    send(run.process, how)
    output = assert_stopped_in_time(run, how, signalled_at, children)
    assert flow_run_state(server.url, output) in FINAL
    assert not (dest / "slow").exists()  # no version, not even a partial one

    gate.unlink()
    again = Run(args, cwd=tmp_path, env=env)
    output = again.finish()
    assert again.process.returncode == 0, output[-3000:]
    stages = re.search(r"stages: (.*)", output)
    assert stages, output[-3000:]
    states = dict(part.split(" ", 1) for part in stages.group(1).strip().split(", "))
    assert (states["train"], states["checkpoint"], states["freeze"], states["upload"]) == (
        "Cached", "Cached", "Completed", "Completed"), stages.group(0)
    assert (dest / "slow" / "1" / "manifest.json").is_file()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultProxy, Emulator]]:
    proxy = FaultProxy()
    emulator = Emulator(tmp_path_factory.mktemp("interrupt-gcs") / "root", external_url=proxy.url).start()
    proxy.forward_to(emulator.port)
    yield proxy, emulator
    proxy.close()
    emulator.stop()


def objects(emulator: Emulator, bucket: str) -> list[str]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options=ClientOptions(api_endpoint=emulator.url))
    return sorted(blob.name for blob in client.list_blobs(bucket))


def new_bucket(emulator: Emulator) -> str:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options=ClientOptions(api_endpoint=emulator.url))
    return client.create_bucket(f"ff-{uuid.uuid4().hex[:16]}").name


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_during_upload_publishes_nothing_and_the_next_run_resumes_from_the_cache(
    how: str, server: local_server.ServerRecord, gcs: tuple[FaultProxy, Emulator], tmp_path: Path
) -> None:
    proxy, emulator = gcs
    bucket = new_bucket(emulator)
    dest = f"gs://{bucket}/models"
    env = {"FREEZEFLOW_SERVER_HOME": str(Path(server.log).parent), "STORAGE_EMULATOR_HOST": proxy.url}
    seed = str(uuid.uuid4().int % 10**6)  # a model of its own: nothing cached by another test
    signalled: dict[str, object] = {}
    run: Optional[Run] = None

    def interrupt() -> None:  # the upload of saved_model.pb has reached the proxy: the stage is mid-way
        assert run is not None
        signalled["children"] = descendants(run.process.pid)
        signalled["at"] = time.monotonic()
        send(run.process, how)
        time.sleep(2.0)  # and the request is still in flight when the signal lands

    proxy.clear()
    proxy.inject(Fault("call", body_contains=b"saved_model.pb", callback=interrupt))
    run = Run(["--seed", seed, "--dest", dest], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 600
    while "at" not in signalled and run.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "at" in signalled, run.finish()[-3000:]
    output = assert_stopped_in_time(run, how, float(signalled["at"]), signalled["children"])  # type: ignore[arg-type]
    assert flow_run_state(server.url, output) in FINAL
    # A version exists once its manifest does (README); an object the interrupted request still wrote
    # after the client gave up is unlisted, and its version number is never reused.
    assert not [name for name in objects(emulator, bucket) if name.endswith("/manifest.json")]

    proxy.clear()
    again = Run(["--seed", seed, "--dest", dest], cwd=tmp_path, env=env)
    output = again.finish()
    assert again.process.returncode == 0, output[-3000:]
    assert ("stages: train Cached, checkpoint Cached, freeze Cached, export Cached, validate Cached, "
            "upload Completed") in output
    assert any(name.endswith("/manifest.json") for name in objects(emulator, bucket))
