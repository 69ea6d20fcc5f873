"""Which errors raised inside a TorchScript module or an ONNX graph are the caller's input.

Both libraries raise one exception class for a request's wrong width, rank or dtype and for a
model broken inside, so the decision rests on where the error was raised and what it says:

- ONNX Runtime checks each feed against the graph's declared input (rank, dtype, every fixed
  dimension) before any node runs, and raises ``InvalidArgument`` naming the input. Once a node
  runs, a failure (``Fail``, ``InvalidArgument``, ``RuntimeException``: "... while running MatMul
  node ...") is the graph's own, unless the graph left a row dimension open (``["N", "F"]``): then
  ONNX Runtime could not check the width, and a node's complaint about dimensions or shapes is
  the rows the caller sent.
- A TorchScript module raises ``RuntimeError`` from torch's operators (``mat1 and mat2 shapes
  cannot be multiplied (2x3 and 6x2)``, ``Expected 2D (unbatched) or 3D (batched) input``,
  ``... must have the same dtype``); one about shapes, sizes, dimensions or dtypes is the input's.
  A ``raise ValueError/TypeError`` in the module's own code (``torch.jit.Error`` ending
  ``builtins.ValueError: ...``) is its input validation, as for scikit-learn. Anything else is
  the model's fault (a 500).

The limit, for both: a model broken inside *with a shape error* (two layers that do not fit) is
told apart from a wrong input only when the model declares its width; otherwise every request
gets the 400 naming the shapes.
"""

from __future__ import annotations

import re

from cloudserve.errors import InvalidRequest

__all__ = ["onnx_rejection", "torch_rejection"]

# torch's and ONNX Runtime's own words for a tensor that does not fit the operator
_ABOUT_SHAPES = re.compile(
    r"shape|\bsizes?\b|dimension|\bdtype\b|scalar type|\brank\b|\b\d-?D\b|channels|"
    r"index out of range in self|broadcast",
    re.IGNORECASE,
)
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_ORT_SOURCE = re.compile(r"\S+\.(?:h|cc|cpp):\d+ (?:\S+::\S+\([^)]*\) )?")
_JIT_RAISED = re.compile(r"^builtins\.(?:ValueError|TypeError): ", re.MULTILINE)


def _rejected(words: str) -> InvalidRequest:
    return InvalidRequest(f"the model rejected the input: {words}", code="model_rejected_input")


def onnx_rejection(exc: Exception, *, width_checked: bool) -> InvalidRequest | None:
    """The 400 for an error from ``InferenceSession.run``, or ``None`` when it is the model's.

    ``width_checked``: every non-batch dimension of the graph's input is fixed, so ONNX Runtime
    checked the rows before running a node.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    text = _ORT_PREFIX.sub("", str(exc).strip())
    node, _, status = text.partition(" Status Message: ")
    if not status:  # raised by the feed checks, before any node ran
        return _rejected(text) if isinstance(exc, ort_errors.InvalidArgument) else None
    node_failure = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.RuntimeException)
    if width_checked or not isinstance(exc, node_failure) or not _ABOUT_SHAPES.search(status):
        return None
    op = re.search(r"while running (\S+) node", node)
    where = f"the {op.group(1)} node" if op else "a node"
    return _rejected(f"{where} failed: {_ORT_SOURCE.sub('', status, count=1).strip()}")


def torch_rejection(exc: Exception) -> InvalidRequest | None:
    """The 400 for an error a TorchScript module raised, or ``None`` when it is the model's."""
    import torch

    text = str(exc).strip()
    last = text.splitlines()[-1] if text else ""  # TorchScript puts its traceback first
    if isinstance(exc, torch.jit.Error):
        raised = _JIT_RAISED.search(text)
        return _rejected(text[raised.end() :].splitlines()[0]) if raised else None
    if isinstance(exc, RuntimeError) and _ABOUT_SHAPES.search(last):
        return _rejected(last.removeprefix("RuntimeError: "))
    return None
