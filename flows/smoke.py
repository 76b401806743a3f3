"""The ``smoke`` flow: the whole pipeline on the default model, fresh (no cache), checked against the guide.

CI runs it to prove that training, freezing, export, validation and publishing work on this machine;
it fails unless every format gives the guide's answers (2.0, 3.0, 4.0 at x = 2, 4, 6).
"""

from __future__ import annotations

from typing import Optional

from prefect import flow

from flows import defaults
from flows.params import DestinationURI, TrainingParams, ValidationParams
from flows.publish import publish_model
from tasks.core.errors import ValidationFailed
from tasks.core.records import RunSummary
from tasks.core.tolerance import compare

GUIDE = {2.0: 2.0, 4.0: 3.0, 6.0: 4.0}
GUIDE_TOLERANCE = 1e-3


def check_guide_answers(summary: RunSummary) -> None:
    """Every format must give the guide's outputs within GUIDE_TOLERANCE."""
    report = summary.validation
    wrong = []
    for prediction in report.predictions:
        for x, got in zip(report.reference_inputs, prediction.outputs):
            want = GUIDE[float(x)]
            if not compare(got, want, atol=GUIDE_TOLERANCE).passed:
                wrong.append(f"{prediction.source} gives {got:.6g} at x={x}, the guide says {want}")
    if wrong:
        raise ValidationFailed("smoke: " + "; ".join(wrong))


@flow(name="smoke", description="The whole pipeline on the default model, uncached, checked against the guide's numbers.")
def smoke(destination: DestinationURI = defaults.SMOKE_DESTINATION, epochs: int = defaults.SMOKE_EPOCHS,
          workspace: Optional[str] = None) -> RunSummary:
    summary = publish_model(
        model_name="smoke",
        training=TrainingParams(epochs=epochs),
        validation=ValidationParams(reference_inputs=list(GUIDE)),
        destination=destination,
        refresh_cache=True,
        workspace=workspace,
    )
    check_guide_answers(summary)
    return summary
