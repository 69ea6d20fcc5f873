"""Open Inference Protocol (KServe v2 / Triton) bodies, with the binary tensor data extension.

Triton's clients send tensors as raw bytes by default: the body is a JSON header of
``Inference-Header-Content-Length`` bytes, followed by each binary input's data in the order of
the inputs that carry ``parameters.binary_data_size``. Answers come back the same way when the
request asks (``parameters.binary_data_output``, or ``parameters.binary_data`` on a requested
output). ``BYTES`` elements are each a 4-byte little-endian length and the bytes.
Spec: https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from cloudserve import codecs
from cloudserve.errors import InvalidRequest

__all__ = [
    "HEADER_LENGTH",
    "OUTPUT_NAME",
    "encode_infer_response",
    "output_tensor",
    "parse_infer_request",
]

HEADER_LENGTH = b"inference-header-content-length"
OUTPUT_NAME = "output-0"


def _header_size(value: str, body_size: int) -> int:
    if not value.isdigit() or int(value) > body_size:
        raise InvalidRequest(
            f"Inference-Header-Content-Length '{value}' is not a size within the "
            f"{body_size}-byte body",
            code="bad_header_length",
        )
    return int(value)


def _json_document(raw: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}", code="malformed_json") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise InvalidRequest(
            "a v2 inference request needs a non-empty 'inputs' list", code="bad_shape"
        )
    return doc


def _binary_tensor(tensor: dict[str, Any], data: bytes) -> np.ndarray:
    name, datatype = tensor.get("name"), str(tensor.get("datatype", "")).upper()
    shape = tensor.get("shape")
    if datatype not in codecs.V2_DATATYPES:
        raise InvalidRequest(f"tensor '{name}': unknown datatype '{datatype}'", code="bad_datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidRequest(f"tensor '{name}': 'shape' must be a list of sizes", code="bad_shape")
    count = int(np.prod(shape))
    if datatype == "BYTES":
        flat = _unpack_bytes(name, data, count)
    else:
        dtype = np.dtype(codecs.V2_DATATYPES[datatype]).newbyteorder("<")
        if len(data) != count * dtype.itemsize:
            raise InvalidRequest(
                f"tensor '{name}': {len(data)} bytes of binary data, but shape {shape} of "
                f"{datatype} needs {count * dtype.itemsize}",
                code="bad_shape",
            )
        flat = np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
    array = flat.reshape(shape)
    if array.ndim == 0 or len(array) == 0:
        raise InvalidRequest(f"tensor '{name}' holds no rows", code="empty_input")
    return array


def _unpack_bytes(name: Any, data: bytes, count: int) -> np.ndarray:
    items: list[str] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidRequest(f"tensor '{name}': truncated BYTES element", code="bad_shape")
        (size,) = struct.unpack_from("<I", data, offset)
        chunk = data[offset + 4 : offset + 4 + size]
        if len(chunk) != size:
            raise InvalidRequest(f"tensor '{name}': truncated BYTES element", code="bad_shape")
        items.append(chunk.decode("utf-8", errors="replace"))
        offset += 4 + size
    if len(items) != count:
        raise InvalidRequest(
            f"tensor '{name}': {len(items)} BYTES elements for a shape of {count}",
            code="bad_shape",
        )
    return np.array(items, dtype=object)


def parse_infer_request(
    body: bytes, header_length: str | None
) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The JSON document and each input tensor (name, array) of an inference request."""
    if header_length is None:
        doc, binary = _json_document(body), b""
    else:
        size = _header_size(header_length, len(body))
        doc, binary = _json_document(body[:size]), body[size:]
    tensors: list[tuple[str, np.ndarray]] = []
    offset = 0
    for t in doc["inputs"]:
        if not isinstance(t, dict):
            raise InvalidRequest("each v2 input must be an object", code="bad_shape")
        declared = (t.get("parameters") or {}).get("binary_data_size")
        if declared is None:
            tensors.append((str(t.get("name")), codecs.decode_v2_tensor(t)))
            continue
        size = declared if isinstance(declared, int) else -1
        if size < 0 or offset + size > len(binary):
            raise InvalidRequest(
                f"tensor '{t.get('name')}': binary_data_size {declared} runs past the "
                f"{len(binary)} bytes after the JSON header",
                code="bad_shape",
            )
        tensors.append((str(t.get("name")), _binary_tensor(t, binary[offset : offset + size])))
        offset += size
    if offset != len(binary):
        raise InvalidRequest(
            f"{len(binary) - offset} bytes of binary data belong to no input", code="bad_shape"
        )
    return doc, tensors


def output_tensor(outputs: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, str]:
    """The model's outputs as the array and v2 datatype ``infer`` answers with."""
    meta = codecs.encode_v2_tensor(OUTPUT_NAME, np.asarray(outputs)[:0])
    return np.asarray(outputs), meta["datatype"]


def _wants_binary(doc: dict[str, Any]) -> bool:
    requested = doc.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
            raise InvalidRequest("'outputs' must be a list of objects", code="bad_shape")
        unknown = [o.get("name") for o in requested if o.get("name") != OUTPUT_NAME]
        if unknown:
            raise InvalidRequest(
                f"unknown output(s) {unknown}; this model has '{OUTPUT_NAME}'", code="bad_output"
            )
        for o in requested:
            flag = (o.get("parameters") or {}).get("binary_data")
            if flag is not None:
                return bool(flag)
    return bool((doc.get("parameters") or {}).get("binary_data_output", False))


def encode_infer_response(
    doc: dict[str, Any], head: dict[str, Any], outputs: Sequence[Any]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The response body and headers: JSON, or a JSON header and binary data when asked."""
    if not _wants_binary(doc):
        body = {**head, "outputs": [codecs.encode_v2_tensor(OUTPUT_NAME, outputs)]}
        return orjson.dumps(body), [(b"content-type", b"application/json")]
    array, datatype = output_tensor(outputs)
    if datatype == "BYTES":
        data = b"".join(
            struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in array.ravel())
        )
    else:
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    tensor = {
        "name": OUTPUT_NAME,
        "shape": list(array.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(data)},
    }
    header = orjson.dumps({**head, "outputs": [tensor]})
    return header + data, [
        (b"content-type", b"application/octet-stream"),
        (HEADER_LENGTH, str(len(header)).encode()),
    ]
