"""TF Serving's REST contract: predict request bodies to named arrays, arrays to response bodies.

It follows https://www.tensorflow.org/tfx/serving/api_rest: the row form (``instances``, answered with
``predictions``) and the columnar form (``inputs``, answered with ``outputs``), ``signature_name``,
``{"b64": …}`` for binary strings, NaN and Infinity as JSON tokens, and output tensors named
``*_bytes`` answered in base64. It knows nothing of HTTP or TensorFlow, so every rule here is tested
on plain values; :mod:`tasks.serving.server` puts it on the wire and :mod:`tasks.serving.repository` runs it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal, Optional

from tasks.core.errors import FreezeflowError
from tasks.core.layout import SIGNATURE_KEY as DEFAULT_SIGNATURE

RowOrColumns = Literal["row", "columnar"]

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1),
}
_FLOATS = ("float16", "bfloat16", "float32", "float64", "half", "float", "double")


class RequestError(FreezeflowError, ValueError):
    """A request the server answers with ``{"error": message}`` and ``status``; never a server fault.

    The only exception :func:`parse_json_body`, :func:`signature_name_of` and :func:`parse_predict_request`
    raise, whatever bytes they are given (the fuzz targets hold them to it).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class TensorInfo:
    """One named input or output of a signature: dtype name (``float32``, ``string``…) and shape (None: any)."""

    dtype: str
    shape: Optional[tuple[Optional[int], ...]]

    def shown(self) -> str:
        if self.shape is None:
            return f"{self.dtype} of any shape"
        return f"{self.dtype} [" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class SignatureSpec:
    key: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclass(frozen=True)
class PredictRequest:
    """A parsed request: which signature, the input arrays by name, and which form to answer in."""

    signature_name: str
    inputs: dict[str, Any]
    form: RowOrColumns
    batch_size: Optional[int]


def parse_json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; NaN and Infinity are accepted, as TF Serving accepts them."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RequestError(f"JSON Parse error: body is not UTF-8 ({exc.reason} at offset {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise RequestError(f"JSON Parse error: {exc.msg} at offset {exc.pos}") from exc
    except RecursionError as exc:
        raise RequestError("JSON Parse error: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
        raise RequestError(f"JSON Parse error: {' '.join(str(exc).split())[:200]}") from exc
    if not isinstance(data, dict):
        raise RequestError("JSON Value is not an object: the body must be {\"instances\": [...]} or {\"inputs\": ...}")
    return data


def signature_name_of(body: dict[str, Any]) -> str:
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise RequestError("'signature_name' must be a string")
    return name or DEFAULT_SIGNATURE


def parse_predict_request(body: dict[str, Any], signature: SignatureSpec) -> PredictRequest:
    """The input arrays a predict body names, checked against the signature's keys, dtypes and shapes."""
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows and has_columns:
        raise RequestError("Request body has both 'instances' and 'inputs'; send one of them")
    if not has_rows and not has_columns:
        raise RequestError("Missing 'inputs' or 'instances' key in the request body")
    if has_rows:
        inputs, batch = _rows(body["instances"], signature)
        return PredictRequest(signature.key, inputs, "row", batch)
    return PredictRequest(signature.key, _columns(body["inputs"], signature), "columnar", None)


def _is_named(value: Any) -> bool:
    """An object of named inputs, as opposed to a ``{"b64": …}`` value."""
    return isinstance(value, dict) and set(value) != {"b64"}


def _rows(instances: Any, signature: SignatureSpec) -> tuple[dict[str, Any], int]:
    if not isinstance(instances, list):
        raise RequestError("'instances' must be a list, one element per instance")
    if not instances:
        raise RequestError("'instances' is empty; send at least one instance")
    keys = list(signature.inputs)
    named = [_is_named(item) for item in instances]
    if any(named) and not all(named):
        raise RequestError("'instances' mixes objects of named inputs with bare values; use one form for all")
    if not named[0]:
        if len(keys) != 1:
            raise RequestError(
                f"signature {signature.key!r} has {len(keys)} inputs ({', '.join(keys)}): each instance must be "
                "an object naming them"
            )
        key = keys[0]
        return {key: to_array(instances, signature.inputs[key], f"input {key!r}", batched=True)}, len(instances)
    columns: dict[str, list] = {key: [] for key in keys}
    for index, item in enumerate(instances):
        _check_named(item, keys, signature, f"instance {index}")
        for key in keys:
            columns[key].append(item[key])
    arrays = {key: to_array(values, signature.inputs[key], f"input {key!r}", batched=True)
              for key, values in columns.items()}
    return arrays, len(instances)


def _check_named(given: dict, keys: list[str], signature: SignatureSpec, where: str) -> None:
    """An object naming inputs must name exactly the signature's inputs."""
    unknown = sorted(set(given) - set(keys))
    if unknown:
        raise RequestError(
            f"{where} has unknown input {unknown[0]!r}; signature {signature.key!r} takes "
            + ", ".join(repr(k) for k in keys)
        )
    missing = [k for k in keys if k not in given]
    if missing:
        raise RequestError(f"{where} lacks input {missing[0]!r} of signature {signature.key!r}")


def _columns(inputs: Any, signature: SignatureSpec) -> dict[str, Any]:
    keys = list(signature.inputs)
    if not _is_named(inputs):
        if len(keys) != 1:
            raise RequestError(
                f"signature {signature.key!r} has {len(keys)} inputs ({', '.join(keys)}): 'inputs' must be an "
                "object naming them"
            )
        return {keys[0]: to_array(inputs, signature.inputs[keys[0]], f"input {keys[0]!r}", batched=False)}
    _check_named(inputs, keys, signature, "'inputs'")
    return {key: to_array(inputs[key], signature.inputs[key], f"input {key!r}", batched=False) for key in keys}


def to_array(value: Any, info: TensorInfo, where: str, batched: bool) -> Any:
    """A nested JSON list as a numpy array of ``info.dtype``; a value of the wrong type or shape is refused.

    ``batched``: the outer list is the row form's list of instances, so a scalar input becomes a vector.
    """
    import numpy as np

    flat: list[Any] = []
    try:
        shape = _walk(value, flat, info.dtype, where)
    except RecursionError as exc:
        raise RequestError(f"{where}: nested too deeply") from exc
    if info.dtype == "string":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        array = array.reshape(shape)
    else:
        try:
            array = np.asarray(flat, dtype=_numpy_dtype(info.dtype)).reshape(shape)
        except OverflowError as exc:  # an integer too large for any float, e.g. 10**400 for float32
            raise RequestError(f"{where}: a number is out of the range of {info.dtype}") from exc
    if info.shape is not None:
        want = info.shape
        if len(want) != len(shape) or any(w is not None and w != g for w, g in zip(want, shape)):
            each = " each instance" if batched else ""
            got = list(shape[1:]) if batched else list(shape)
            wanted = TensorInfo(info.dtype, want[1:] if batched and want else want).shown()
            raise RequestError(f"{where}:{each} has shape {got}, but the signature takes {wanted}")
    return array


def _numpy_dtype(dtype: str) -> Any:
    import numpy as np

    if dtype == "bfloat16":  # numpy has none; TensorFlow casts from float32 (tasks.serving.repository)
        return np.float32
    return np.dtype({"half": "float16", "float": "float32", "double": "float64"}.get(dtype, dtype))


def _walk(value: Any, flat: list[Any], dtype: str, where: str) -> tuple[int, ...]:
    """Append the leaves of ``value`` to ``flat`` and return its shape; ragged lists are refused."""
    if isinstance(value, list):
        if not value:
            return (0,)
        inner = _walk(value[0], flat, dtype, where)
        for item in value[1:]:
            if _walk(item, flat, dtype, where) != inner:
                raise RequestError(f"{where}: lists of different lengths at the same depth (a ragged tensor)")
        return (len(value),) + inner
    flat.append(_leaf(value, dtype, where))
    return ()


def _leaf(value: Any, dtype: str, where: str) -> Any:
    if dtype == "string":
        if isinstance(value, str):
            try:
                return value.encode("utf-8")
            except UnicodeEncodeError as exc:  # JSON's "\ud800" escapes a lone surrogate, which is no text
                raise RequestError(f"{where}: a string is not valid Unicode ({exc.reason}); send bytes as "
                                   "{\"b64\": ...}") from exc
        if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise RequestError(f"{where}: 'b64' value is not valid base64 ({exc})") from exc
        raise RequestError(f"{where}: {_json_type(value)} where DT_STRING takes a string or {{\"b64\": ...}}")
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            raise RequestError(f"{where}: {{\"b64\": ...}} is only for DT_STRING inputs; this input is {dtype}")
        raise RequestError(f"{where}: an object where {dtype} takes numbers")
    if dtype == "bool":
        if isinstance(value, bool):
            return value
        raise RequestError(f"{where}: {_json_type(value)} {value!r} where bool takes true or false")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{where}: {_json_type(value)} {_short(value)} where {dtype} takes numbers")
    if dtype in _FLOATS:
        return value
    if dtype in _INT_RANGES:
        if isinstance(value, float):
            if not value.is_integer():
                raise RequestError(f"{where}: {value!r} is not a whole number, as {dtype} requires")
            value = int(value)
        low, high = _INT_RANGES[dtype]
        if not low <= value <= high:
            raise RequestError(f"{where}: {value} is outside the range of {dtype}")
        return value
    raise RequestError(f"{where}: inputs of dtype {dtype} are not supported over REST")


def _json_type(value: Any) -> str:
    return {bool: "boolean", str: "string", dict: "object", type(None): "null", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def response_body(outputs: dict[str, Any], request: PredictRequest) -> dict[str, Any]:
    """``{"predictions": …}`` for the row form, ``{"outputs": …}`` for the columnar form, as TF Serving answers."""
    names = sorted(outputs)
    values = {name: _json_values(outputs[name], name) for name in names}
    if request.form == "columnar":
        return {"outputs": values[names[0]] if len(names) == 1 else values}
    for name in names:
        shape = getattr(outputs[name], "shape", ())
        if len(shape) == 0 or shape[0] != request.batch_size:
            raise RequestError(
                f"output {name!r} has shape {list(shape)}, not one row per instance ({request.batch_size}); "
                "use the columnar form ('inputs')"
            )
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    return {"predictions": [{name: values[name][i] for name in names} for i in range(request.batch_size or 0)]}


def _json_values(array: Any, name: str) -> Any:
    import numpy as np

    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        binary = name.endswith("_bytes")
        return _map_nested(array.tolist(), lambda v: _string_value(v, binary))
    if array.dtype in (np.float16, np.float32):
        # Widening float32 to Python's float64 prints 0.1 as 0.10000000149011612; TF Serving prints the
        # shortest text that reads back as the same float32. numpy's str() is that text.
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def _string_value(value: Any, binary: bool) -> Any:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if not binary:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # not text: base64 keeps every byte instead of mangling them
    return {"b64": base64.b64encode(data).decode("ascii")}


def _map_nested(value: Any, fn: Any) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def encode(body: dict[str, Any]) -> bytes:
    """JSON bytes for a response; NaN and Infinity are written as tokens, as TF Serving writes them."""
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
