"""The REST request parser on hostile bytes: it answers with RequestError (a FreezeflowError) and nothing else.

These are the seeds of the parser's fuzz target: whatever bytes arrive, the server answers 400 and
never a 500 from a parser crash.
"""

from __future__ import annotations

import pytest

from tasks.core.errors import FreezeflowError
from tasks.serving.rest import (
    RequestError,
    SignatureSpec,
    TensorInfo,
    parse_json_body,
    parse_predict_request,
    signature_name_of,
)

SPECS = [
    SignatureSpec("serving_default", {"inputs": TensorInfo("float32", (None,))}, {"outputs": TensorInfo("float32", (None,))}),
    SignatureSpec("pair", {"a": TensorInfo("float32", (None,)), "b": TensorInfo("int32", (None, 2))},
                  {"sum": TensorInfo("float32", (None,))}),
    SignatureSpec("text", {"text": TensorInfo("string", (None,))}, {"length": TensorInfo("int32", (None,))}),
    SignatureSpec("any", {"x": TensorInfo("uint8", None), "flag": TensorInfo("bool", None),
                          "h": TensorInfo("bfloat16", None)}, {"y": TensorInfo("float16", None)}),
]

NASTY = [
    b"", b"\x00", b"\xff\xfe\x00", b"\xef\xbb\xbf{}", b"null", b"[]", b'"instances"', b"{", b"}" * 10,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"instances": [' + b"9" * 5000 + b"]}",  # past Python's int-to-str digit limit
    b'{"instances": [1' + b"0" * 400 + b"]}",  # an int too large for any float
    b'{"inputs": {"a": [1e999], "b": [[NaN, Infinity]]}}',
    b'{"instances": [{"a": -Infinity, "b": [1e300, 2]}]}',
    b'{"instances": ["\\ud800"]}',  # a lone surrogate: no UTF-8 encoding exists
    b'{"signature_name": "text", "instances": ["\\udfff", {"b64": "\\u00e9\\u00e9=="}]}',
    b'{"instances": [{"b64": 5}], "signature_name": {"x": 1}}',
    b'{"inputs": {"x": [[1, 2], [3]], "flag": [true, 1], "h": [1e40]}}',
    b'{"inputs": {"x": [256, -1], "flag": [[true]], "h": [[1.0]]}}',
    b'{"instances": [{"inputs": {"inputs": {"inputs": 1}}}]}',
    b'{"instances": [[], [[]], [[[]]]]}',
    b'{"inputs": [], "instances": []}',
    b'{"instances": [{"text": null}], "signature_name": "text"}',
    '{"instances": ["\u2028é\U0001F600"], "signature_name": "text"}'.encode(),
]


@pytest.mark.parametrize("body", NASTY, ids=[f"body{i}" for i in range(len(NASTY))])
def test_the_parser_raises_only_request_errors_on_hostile_bodies(body: bytes) -> None:
    for spec in SPECS:
        try:
            parsed = parse_json_body(body)
            signature_name_of(parsed)
            parse_predict_request(parsed, spec)
        except RequestError as exc:
            assert isinstance(exc, FreezeflowError) and exc.status == 400
            assert exc.message and "\n" not in str(exc)


def test_a_lone_surrogate_in_a_string_input_is_a_400_naming_the_input() -> None:
    with pytest.raises(RequestError, match="input 'text': a string is not valid Unicode"):
        parse_predict_request(parse_json_body(b'{"instances": ["\\ud800"]}'), SPECS[2])


def test_a_number_too_large_for_the_dtype_is_a_400() -> None:
    with pytest.raises(RequestError, match="input 'inputs': a number is out of the range of float32"):
        parse_predict_request(parse_json_body(b'{"instances": [1' + b"0" * 400 + b"]}"), SPECS[0])
    with pytest.raises(RequestError, match="JSON Parse error: Exceeds the limit"):
        parse_json_body(b'{"instances": [' + b"9" * 5000 + b"]}")
