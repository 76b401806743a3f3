"""The closed sets of parameter values: what each allows, in the order the CLI shows them."""

from __future__ import annotations

from tasks.core import names


def test_choices_lists_a_literal_s_values_in_order() -> None:
    assert names.choices(names.CheckpointFormat) == ("tf1", "tf2")
    assert names.choices(names.FreezeEngine) == ("stream", "tf")
    assert names.choices(names.ModelFormat) == ("checkpoint", "frozen_graph", "saved_model")


def test_the_protobuf_limit_is_two_gib_less_one_byte() -> None:
    assert names.PROTOBUF_LIMIT == 2 * 1024**3 - 1


def test_reading_the_names_imports_neither_pydantic_nor_prefect_nor_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import sys, tasks.core.names; "
            "print([m for m in ('pydantic', 'prefect', 'tensorflow', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
