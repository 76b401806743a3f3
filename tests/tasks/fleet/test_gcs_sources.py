"""gs:// SOURCEs against the GCS emulator: checkpoint folders found under a prefix, a JSON Lines listing read
from a bucket, and a gs:// checkpoint copied into the workspace for a worker to convert."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.gcs_support import Emulator

storage = pytest.importorskip("google.cloud.storage")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = Emulator(tmp_path_factory.mktemp("gcs") / "root").start()
    yield server
    server.stop()


@pytest.fixture
def bucket(emulator: Emulator, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a storage.Bucket
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    return storage.Client().create_bucket(f"ff-{uuid.uuid4().hex[:16]}")


def upload_folder(bucket, folder: Path, prefix: str) -> None:  # noqa: ANN001
    for path in sorted(folder.iterdir()):
        bucket.blob(f"{prefix}/{path.name}").upload_from_filename(str(path))


def test_checkpoint_folders_under_a_prefix_become_items(bucket, guide_checkpoint_dir: Path) -> None:  # noqa: ANN001
    from tasks.fleet.sources import scan

    upload_folder(bucket, guide_checkpoint_dir, "sweeps/a/Run_1")
    upload_folder(bucket, guide_checkpoint_dir, "sweeps/b/run-2")
    bucket.blob("sweeps/notes.txt").upload_from_string("not a checkpoint")
    bucket.blob("sweeps/b/run-2/variables/variables.index").upload_from_string("")  # never descended into
    items = list(scan([f"gs://{bucket.name}/sweeps/"], output_nodes=["y"]))
    assert [(i.checkpoint, i.model_name) for i in items] == [
        (f"gs://{bucket.name}/sweeps/a/Run_1", "run_1"), (f"gs://{bucket.name}/sweeps/b/run-2", "run-2")]


def test_a_gs_checkpoint_is_copied_into_the_workspace_once_per_content(
    bucket, guide_checkpoint_dir: Path, tmp_path: Path  # noqa: ANN001
) -> None:
    from tasks.fleet.sources import localise
    from tasks.tf.checkpoints import describe_checkpoint

    upload_folder(bucket, guide_checkpoint_dir, "runs/guide")
    uri = f"gs://{bucket.name}/runs/guide"
    local = localise(uri, tmp_path)
    assert sorted(p.name for p in Path(local).iterdir()) == sorted(p.name for p in guide_checkpoint_dir.iterdir())
    assert describe_checkpoint(local, output_nodes=["y"]).format == "tf1"
    assert localise(uri, tmp_path) == local  # same objects, same generations: no second copy
    bucket.blob("runs/guide/checkpoint").upload_from_filename(str(guide_checkpoint_dir / "checkpoint"))
    assert localise(uri, tmp_path) != local  # a rewritten object is a new generation


def test_a_json_lines_listing_in_a_bucket_is_read_by_line(bucket) -> None:  # noqa: ANN001
    from tasks.core.errors import ParameterError
    from tasks.fleet.sources import check_batch, scan

    bucket.blob("lists/ok.jsonl").upload_from_string(
        json.dumps({"checkpoint": f"gs://{bucket.name}/runs/x", "model_name": "x"}) + "\n")
    [item] = scan([f"gs://{bucket.name}/lists/ok.jsonl"])
    assert (item.checkpoint, item.model_name, item.origin) == (
        f"gs://{bucket.name}/runs/x", "x", f"gs://{bucket.name}/lists/ok.jsonl:1")
    bucket.blob("lists/bad.jsonl").upload_from_string('{"checkpoint": "gs://b/x"}\n{"checkpoint": "relative"}\n')
    with pytest.raises(ParameterError, match=r"bad.jsonl line 2: checkpoint 'relative' is relative; a gs:// listing"):
        check_batch([f"gs://{bucket.name}/lists/bad.jsonl"])


def test_a_missing_bucket_is_named(bucket) -> None:  # noqa: ANN001
    from tasks.core.errors import ParameterError
    from tasks.fleet.sources import check_batch

    with pytest.raises(ParameterError, match=r"^SOURCE gs://no-such-bucket-[0-9a-f]+/: not found"):
        check_batch([f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/"])
