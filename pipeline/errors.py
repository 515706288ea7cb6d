"""The one error type users see, and the one-line error for a missing optional dependency."""
from __future__ import annotations

import importlib
from typing import Any

# The extra that installs each optional module.
INSTALL = {"onnx": "pip install 'finetune-pipeline[onnx]'", "onnxruntime": "pip install 'finetune-pipeline[onnx]'",
           "openvino": "pip install 'finetune-pipeline[openvino]'", "setfit": "pip install 'finetune-pipeline[setfit]'",
           "trl": "pip install 'finetune-pipeline[preference]'"}


class PipelineError(Exception):
    """A problem the user can fix: the message names the problem and the fix, on one line.

    The CLI prints it as ``error: <message>`` with no traceback (unless ``--debug``).
    """


def require(module: str, extra: str | None = None) -> Any:
    """Import an optional module, or stop with the one line that installs the extra holding it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PipelineError(f"{module} is not installed; run: {INSTALL[extra or module]}") from None
