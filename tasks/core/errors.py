"""The exceptions freezeflow raises: one family, each member also a built-in, each message one line.

    FreezeflowError (Exception)
    ├── ParameterError (ValueError)        a parameter or argument is malformed
    ├── EntrypointError (ImportError)       a user entrypoint does not import or breaks its contract
    ├── CheckpointError (ValueError)        a checkpoint is missing, truncated or unreadable
    ├── OutputNodeError (KeyError)          an output node name that the graph does not hold
    ├── GraphTooLargeError (ValueError)     a frozen graph would pass protobuf's 2 GiB limit
    ├── UnsupportedGraphError (ValueError)  a graph construct that cannot be frozen correctly
    ├── ValidationFailed (AssertionError)   the formats disagree, or the SavedModel breaks the contract
    ├── TrainingDiverged (ArithmeticError)  training ended with a loss or a variable that is not finite
    ├── OutputWriteError (OSError)          an output file cannot be written (full disk, permissions, ...)
    ├── StaleArtifactError (FileNotFoundError)  a record whose files are gone or changed on disk
    ├── PredictionError (RuntimeError)     an endpoint refused a prediction or kept failing
    ├── DeploymentError (RuntimeError)     a Vertex AI deploy failed (and was rolled back)
    └── DestinationError (OSError)          publishing failed
        ├── PermanentDestinationError       retrying cannot help (permission, missing bucket, bad path)
        │   └── BrokenManifestError         a version's manifest.json is not JSON, or not a JSON object
        └── TransientDestinationError       retrying may help (429, 5xx, reset connection, timeout)

Every message names the file or parameter at fault and says what to do; the CLI prints it as one line.
"""

from __future__ import annotations


class FreezeflowError(Exception):
    """Base of every error freezeflow raises on purpose."""

    def __str__(self) -> str:  # one line, always: the CLI prints it as the reason
        text = " ".join(str(arg) for arg in self.args)
        return " ".join(text.split())


class ParameterError(FreezeflowError, ValueError):
    """A parameter or argument is malformed."""


class EntrypointError(FreezeflowError, ImportError):
    """A user entrypoint does not import, or returns something that breaks the contract."""


class CheckpointError(FreezeflowError, ValueError):
    """A checkpoint is missing, truncated or cannot be read."""


class OutputNodeError(FreezeflowError, KeyError):
    """An output node name that the graph does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return FreezeflowError.__str__(self)


class GraphTooLargeError(FreezeflowError, ValueError):
    """The frozen graph would pass protobuf's 2 GiB limit."""


class UnsupportedGraphError(FreezeflowError, ValueError):
    """The graph holds a construct that cannot be frozen into a correct graph."""


class ValidationFailed(FreezeflowError, AssertionError):
    """The checkpoint, frozen graph and SavedModel disagree, or the SavedModel breaks the contract."""


class TrainingDiverged(FreezeflowError, ArithmeticError):
    """Training ended with a loss (or a variable) that is not a finite number: the model is unusable."""


class OutputWriteError(FreezeflowError, OSError):
    """An output file cannot be written: the message says why (a full disk, permissions, a read-only file system)."""


class StaleArtifactError(FreezeflowError, FileNotFoundError):
    """A record's files are gone or no longer hold the recorded digest."""


class PredictionError(FreezeflowError, RuntimeError):
    """An endpoint refused a prediction request, or kept failing it past the retries."""

    def __init__(self, message: str, status: "int | None" = None) -> None:
        super().__init__(message)
        self.status = status


class DeploymentError(FreezeflowError, RuntimeError):
    """A Vertex AI upload, deploy or smoke prediction failed; what the run made was taken back."""


class DestinationError(FreezeflowError, OSError):
    """Publishing to a destination failed."""


class PermanentDestinationError(DestinationError):
    """Publishing failed in a way retrying cannot fix."""


class TransientDestinationError(DestinationError):
    """Publishing failed in a way that a retry may fix."""


class BrokenManifestError(PermanentDestinationError):
    """A published version's manifest.json is not JSON, or not a JSON object: that version cannot be read."""
