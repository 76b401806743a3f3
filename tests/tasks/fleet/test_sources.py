"""What a SOURCE names: checkpoint folders found by walking, JSON Lines items, model names, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.errors import ParameterError
from tasks.fleet.items import FleetItem, model_name_for
from tasks.fleet.sources import check_batch, scan


def fake_checkpoint(folder: Path, state_file: bool = True) -> Path:
    """The file names scanning looks at (scanning never opens them)."""
    folder.mkdir(parents=True)
    for name in ("model.index", "model.meta", "model.data-00000-of-00001"):
        (folder / name).write_bytes(b"")
    if state_file:
        (folder / "checkpoint").write_text('model_checkpoint_path: "model"\n')
    return folder


def test_walk_finds_nested_checkpoint_folders_in_name_order_and_skips_hidden_ones(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path / "sweep" / "B-Run")
    fake_checkpoint(tmp_path / "sweep" / "a" / "lr=0.1", state_file=False)  # .index + .meta is enough
    fake_checkpoint(tmp_path / ".freezeflow" / "work" / "checkpoint" / "x")
    (tmp_path / "sweep" / "notes").mkdir()
    (tmp_path / "sweep" / "a" / "saved_model" / "variables").mkdir(parents=True)
    (tmp_path / "sweep" / "a" / "saved_model" / "variables" / "variables.index").write_bytes(b"")
    items = list(scan([str(tmp_path)], output_nodes=["y"]))
    assert [(Path(i.checkpoint).relative_to(tmp_path).as_posix(), i.model_name) for i in items] == [
        ("sweep/B-Run", "b-run"), ("sweep/a/lr=0.1", "lr-0.1")]
    assert all(i.output_nodes == ("y",) and Path(i.checkpoint).is_absolute() for i in items)


def test_scan_is_a_stream(tmp_path: Path) -> None:
    for i in range(3):
        fake_checkpoint(tmp_path / f"c{i}")
    stream = scan([str(tmp_path)])
    assert next(stream).model_name == "c0"  # a generator: nothing beyond the first folder is needed yet


def test_jsonl_items_keep_their_own_settings_and_resolve_paths_beside_the_file(tmp_path: Path) -> None:
    listing = tmp_path / "lists" / "batch.jsonl"
    listing.parent.mkdir()
    listing.write_text("\n".join([
        json.dumps({"checkpoint": "../ckpt/one/model", "output_nodes": ["out"]}),
        "",
        json.dumps({"checkpoint": "gs://bucket/runs/two", "model_name": "second", "entrypoint": "pkg.mod:build"}),
    ]) + "\n")
    one, two = scan([str(listing)], output_nodes=["y"], entrypoint="default.mod:fn")
    assert one == FleetItem(checkpoint=str(tmp_path / "ckpt" / "one" / "model"), model_name="one",
                            output_nodes=("out",), entrypoint="default.mod:fn", origin=f"{listing}:1")
    assert (two.checkpoint, two.model_name, two.output_nodes, two.entrypoint, two.origin) == (
        "gs://bucket/runs/two", "second", ("y",), "pkg.mod:build", f"{listing}:3")


@pytest.mark.parametrize(("line", "message"), [
    ('{"checkpoint": "a",}', r"line 2 is not JSON \(Expecting property name"),
    ('["a"]', r"line 2: expected a JSON object, got list"),
    ('{"path": "a"}', r"line 2: unknown key 'path'; an item has checkpoint, entrypoint, model_name, output_nodes"),
    ('{"model_name": "a"}', r'line 2: "checkpoint" \(a path or gs:// URI\) is missing'),
    ('{"checkpoint": "a", "output_nodes": "y"}', r'line 2: "output_nodes" must be a list of node names'),
    ('{"checkpoint": "a", "model_name": "Bad Name"}', r"line 2: model_name 'Bad Name' must be 1-63 lowercase"),
])
def test_a_malformed_line_is_refused_by_number(tmp_path: Path, line: str, message: str) -> None:
    listing = tmp_path / "batch.jsonl"
    listing.write_text(json.dumps({"checkpoint": "ok"}) + "\n" + line + "\n")
    with pytest.raises(ParameterError, match=rf"^SOURCE {listing} {message}"):
        check_batch([str(listing)])


def test_two_items_with_one_name_are_refused_before_any_work(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path / "a" / "Run")
    fake_checkpoint(tmp_path / "b" / "run")
    with pytest.raises(ParameterError, match=r"a/Run and .*b/run: both would publish as model 'run'; rename a folder"):
        check_batch([str(tmp_path)])


def test_the_same_source_twice_is_refused(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path / "run")
    with pytest.raises(ParameterError, match=r"run is listed twice: both would publish as model 'run'"):
        check_batch([str(tmp_path), str(tmp_path)])


def test_missing_and_empty_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=rf"^SOURCE {tmp_path}/nope does not exist"):
        check_batch([str(tmp_path / "nope")])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ParameterError, match=rf"^SOURCE {tmp_path}/empty holds no checkpoint"):
        check_batch([str(tmp_path / "empty")])


@pytest.mark.parametrize(("path", "is_folder", "name"), [
    ("/x/Sweep 1/Run_07", True, "run_07"),
    ("/x/lr=0.01,bs=64/model", False, "lr-0.01-bs-64"),
    ("gs://bucket/sweeps/Élan-3/", True, "lan-3"),
    ("/x/" + "a" * 80, True, "a" * 63),
])
def test_model_names_come_from_the_folder_made_valid(path: str, is_folder: bool, name: str) -> None:
    assert model_name_for(path, is_folder) == name


def test_a_folder_name_with_nothing_usable_is_refused() -> None:
    with pytest.raises(ParameterError, match=r"folder name '___' makes no valid model name"):
        model_name_for("/x/___", True)
