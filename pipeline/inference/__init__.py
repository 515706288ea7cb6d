"""Inference: the batched engines behind predict, ner, evaluate and serve (``engines``), what runs
the model (``backends``: torch, ONNX Runtime, OpenVINO, and ``auto``), ONNX Runtime's per-token int8
rewrite (``onnx_int8``), the HTTP server (``serve``) and the language-model tools (``lm_tools``:
fill-mask, generate, inspect).

May import: ``runs`` and everything below it. Not training (its sibling), planning or the API."""
