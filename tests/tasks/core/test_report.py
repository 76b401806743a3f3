"""The run report's Markdown: stages, published files, validation table and training, from a RunSummary."""

from __future__ import annotations

from tasks.core.report import _size, run_markdown
from tests.support.records import run_summary


def test_the_report_lists_stages_files_and_every_format_s_answers() -> None:
    markdown = run_markdown(run_summary(states={"train": "Cached"}))
    assert markdown.startswith("# linear v1\n\nPublished to `/tmp/published/linear/1`\n")
    assert "| train | Cached | 0.25 |\n| checkpoint | Completed | 0.50 |" in markdown
    assert "| variables/variables.index | 2.0 KiB | `1111111111111111…` |" in markdown
    assert ("Validation: passed, largest difference 0 (rtol 0.0001, atol 1e-05), "
            "on 3 instance(s) given inline") in markdown
    assert ("| input | checkpoint | frozen_graph | saved_model |\n|---|---|---|---|\n"
            "| 2.0 | 2.0 | 2.0 | 2.0 |\n| 4.0 | 3.0 | 3.0 | 3.0 |\n| 6.0 | 4.0 | 4.0 | 4.0 |\n") in markdown
    assert "Training" not in markdown  # a converted checkpoint has no losses


def test_a_reused_version_and_training_losses_are_reported() -> None:
    markdown = run_markdown(run_summary(reused=True, losses=(1.5, 0.25, 0.001)))
    assert "(identical content was already there)" in markdown
    assert markdown.endswith("Training: 3 epochs, loss 1.5 → 0.001\n")


def test_sizes_read_in_binary_units() -> None:
    assert [_size(n) for n in (0, 1023, 1024, 1536, 5 * 1024**2, 3 * 1024**3, 4096 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 GiB", "4096.0 GiB"]
