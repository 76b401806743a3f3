"""Reference inputs from files (.npy, .npz, JSON) and generated from the input signature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.core.errors import ParameterError
from tasks.core.records import TensorSpec
from tasks.core.reference_inputs import describe_reference, embedding_rows, generate, load_file

IMAGE = TensorSpec(name="x", dtype="float32", shape=(None, 8, 8, 3))
TOKENS = TensorSpec(name="ids", dtype="int32", shape=(None, None))


def test_npy_npz_and_json_files_give_the_same_batch(tmp_path: Path) -> None:
    batch = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "batch.npy", batch)
    np.savez(tmp_path / "batch.npz", inputs=batch)
    (tmp_path / "batch.json").write_text(json.dumps({"instances": batch.tolist()}))
    for name in ("batch.npy", "batch.npz", "batch.json"):
        reference = describe_reference(None, str(tmp_path / name), 0, 2)
        assert reference.source == "file" and len(reference.file_sha256 or "") == 64
        np.testing.assert_array_equal(np.asarray(load_file(reference, IMAGE, "inputs"), dtype=np.float32), batch)


def test_npz_with_arrays_for_inputs_the_model_lacks_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", inputs=np.zeros((1, 8, 8, 3)), mask=np.zeros((1, 8)))
    reference = describe_reference(None, str(tmp_path / "two.npz"), 0, 2)
    with pytest.raises(ParameterError, match=r"two\.npz holds arrays \['mask'\] the model has no input for"):
        load_file(reference, IMAGE, "inputs")
    np.savez(tmp_path / "named.npz", a=np.zeros((1, 8, 8, 3)), b=np.zeros((1, 8)))
    reference = describe_reference(None, str(tmp_path / "named.npz"), 0, 2)
    with pytest.raises(ParameterError, match=r"holds arrays \['a', 'b'\]; the model's one input is 'inputs'"):
        load_file(reference, IMAGE, "inputs")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("batch.txt", b"1 2 3", r"expected \.npy, \.npz or \.json, got '\.txt'"),
        ("missing.npy", None, r"missing\.npy does not exist"),
    ],
)
def test_a_file_of_the_wrong_kind_or_missing_is_named(tmp_path: Path, name: str, content: bytes | None,
                                                      message: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ParameterError, match=message):
        describe_reference(None, str(tmp_path / name), 0, 2)


def test_a_pickled_npy_is_refused_not_loaded(tmp_path: Path) -> None:
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    reference = describe_reference(None, str(tmp_path / "objects.npy"), 0, 2)
    with pytest.raises(ParameterError, match=r"objects\.npy cannot be read as npy"):
        load_file(reference, IMAGE, "inputs")


def test_a_file_changed_after_it_was_described_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "batch.npy", np.zeros((1, 8, 8, 3), np.float32))
    reference = describe_reference(None, str(tmp_path / "batch.npy"), 0, 2)
    np.save(tmp_path / "batch.npy", np.ones((1, 8, 8, 3), np.float32))
    with pytest.raises(ParameterError, match="changed while the run was using it"):
        load_file(reference, IMAGE, "inputs")


def test_generated_inputs_follow_the_signature_and_the_seed() -> None:
    first = generate(IMAGE, seed=3, batch_size=2)
    assert first.shape == (2, 8, 8, 3) and first.dtype == np.float32
    assert np.array_equal(first, generate(IMAGE, seed=3, batch_size=2))
    assert not np.array_equal(first, generate(IMAGE, seed=4, batch_size=2))
    tokens = generate(TOKENS, seed=0, batch_size=3, integer_high=7)
    assert tokens.shape == (3, 4) and tokens.dtype == np.int32 and 0 <= tokens.min() and tokens.max() < 7
    flags = generate(TensorSpec(name="f", dtype="bool", shape=(None,)), seed=0, batch_size=5)
    assert flags.dtype == np.bool_ and flags.shape == (5,)


def test_embedding_rows_are_found_through_casts_and_reshapes() -> None:
    from tasks.freeze_engine import protos

    graph = protos.graph_pb2.GraphDef()
    ids = graph.node.add(name="ids", op="Placeholder")
    ids.attr["dtype"].type = 3
    table = graph.node.add(name="table", op="VarHandleOp")
    table.attr["shape"].shape.dim.add(size=200)
    table.attr["shape"].shape.dim.add(size=16)
    graph.node.add(name="read", op="ReadVariableOp", input=["table"])
    graph.node.add(name="cast", op="Cast", input=["ids"])
    graph.node.add(name="lookup", op="GatherV2", input=["read", "cast", "axis"])
    graph.node.add(name="other", op="GatherV2", input=["cast", "cast", "axis"])  # ids as params: no range
    assert embedding_rows(graph, "ids") == 200
    assert embedding_rows(graph, "table") is None
