"""ONNX Runtime int8 with a scale per token.

ONNX Runtime's own dynamic quantization gives each activation tensor one scale, so a few large
hidden features (BERT-style encoders have them after every LayerNorm) set the step for every value
in the batch: on two short SST-2 runs it kept 97.1-97.5% of fp32's labels. Here each row of each
activation (one token's vector) gets its own scale and zero point, computed as the graph runs, and
each weight column its own scale: 99.0-99.3% kept, where rounding the weights alone keeps 99.4%.
The matrix multiplies run in ONNX Runtime's u8 x s8 kernels (MatMulIntegerToFloat applies both
scales); one extra pass subtracts the zero points' share. Speeds: bench/RESULTS.md.

For every MatMul whose second input is a 2-D float weight, with x of shape (..., K):

    x2 = x reshaped to (rows, K)
    scale = (max(row, 0) - min(row, 0)) / 255;  zero = round(-min(row, 0) / scale)   per row
    q = QuantizeLinear(x2, scale, zero)                                    uint8, per row (axis 0)
    y = scale * w_scale * (q @ Wq)  -  scale * zero * w_scale * colsum(Wq)  reshaped to (..., N)

since x ~= scale * (q - zero) and W ~= Wq * w_scale with Wq = round(W / w_scale) in [-127, 127] ([-63, 63] on x86 without VNNI).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError

TINY_SCALE = 1e-8  # an all-zero row quantizes to zeros instead of dividing by zero
LARGE_GRAPH_BYTES = 1.8e9  # protobuf's limit is 2 GB: weights beside the graph above this


def weight_steps_exact_here() -> int:
    """The largest int8 weight step this CPU multiplies exactly: 127, or 63 on x86 CPUs without VNNI.
    There ONNX Runtime's u8 x s8 kernel adds pairs of products in int16 (AVX2's vpmaddubsw), and
    2 x 255 x 127 overflows it: on an AVX2-only AMD EPYC a tiny Llama's probabilities moved 0.015
    from fp32. Seven-bit weights (2 x 255 x 63 fits) are ONNX Runtime's own ``reduce_range`` remedy."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return 127  # ARM's int8 dot products accumulate in int32
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return 63  # an x86 CPU whose features we cannot read: the safe range
    return 127 if {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags) else 63


def quantize_per_token(source: Path, target: Path, weight_steps: int = 127) -> None:
    """Write ``source``'s graph with its weight matrix multiplies in int8 (weights rounded to
    ``weight_steps`` steps each side of zero) to ``target``. Needs opset 18 or later (reductions take their
    axes as an input), which ``pipeline export`` writes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 18:
        raise PipelineError(f"{source} uses ONNX opset {opset}; int8 needs opset 18 or later: delete "
                            f"{source.parent} and run the command again to convert the run anew")
    weights = {init.name: init for init in graph.initializer}
    added: list[onnx.TensorProto] = []

    def constant(name: str, value: np.ndarray) -> str:
        added.append(numpy_helper.from_array(value, name))
        return name

    row_axis = constant("int8/axis_1", np.array([1], dtype=np.int64))
    zero = constant("int8/zero", np.array(0, dtype=np.float32))
    tiny = constant("int8/tiny", np.array(TINY_SCALE, dtype=np.float32))
    levels = constant("int8/255", np.array(255, dtype=np.float32))

    nodes: list[onnx.NodeProto] = []
    quantized_rows: dict[str, str] = {}  # activation -> name prefix of its quantized rows
    int8_weights: dict[str, tuple[str, str, str]] = {}  # weight -> (Wq, w_scale, w_scale * colsum)
    converted = 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        k, n = weight.dims
        if weight.name not in int8_weights:
            w = numpy_helper.to_array(weight).astype(np.float32)
            w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / weight_steps
            wq = np.clip(np.round(w / w_scale), -weight_steps, weight_steps).astype(np.int8)
            base = f"int8/{weight.name}"
            int8_weights[weight.name] = (constant(base + "/q", wq), constant(base + "/scale", w_scale.astype(np.float32)),
                                         constant(base + "/colsum", (wq.sum(axis=0, dtype=np.int64) * w_scale).astype(np.float32)))
        wq, w_scale, colsum = int8_weights[weight.name]

        x = node.input[0]
        if x not in quantized_rows:
            r = quantized_rows[x] = f"int8/rows{len(quantized_rows)}"
            nodes += [
                helper.make_node("Reshape", [x, constant(r + "/shape", np.array([-1, k], dtype=np.int64))], [r + "/x"]),
                helper.make_node("ReduceMax", [r + "/x", row_axis], [r + "/max_raw"], keepdims=0),
                helper.make_node("ReduceMin", [r + "/x", row_axis], [r + "/min_raw"], keepdims=0),
                helper.make_node("Max", [r + "/max_raw", zero], [r + "/max"]),
                helper.make_node("Min", [r + "/min_raw", zero], [r + "/min"]),
                helper.make_node("Sub", [r + "/max", r + "/min"], [r + "/range"]),
                helper.make_node("Div", [r + "/range", levels], [r + "/scale_raw"]),
                helper.make_node("Max", [r + "/scale_raw", tiny], [r + "/scale"]),
                helper.make_node("Div", [r + "/min", r + "/scale"], [r + "/min_steps"]),
                helper.make_node("Neg", [r + "/min_steps"], [r + "/zero_raw"]),
                helper.make_node("Round", [r + "/zero_raw"], [r + "/zero"]),
                helper.make_node("Cast", [r + "/zero"], [r + "/zero_u8"], to=TensorProto.UINT8),
                helper.make_node("QuantizeLinear", [r + "/x", r + "/scale", r + "/zero_u8"], [r + "/q"], axis=0),
                helper.make_node("Unsqueeze", [r + "/scale", row_axis], [r + "/scale_col"]),
                helper.make_node("Mul", [r + "/zero", r + "/scale"], [r + "/offset"]),
                helper.make_node("Unsqueeze", [r + "/offset", row_axis], [r + "/offset_col"]),
                helper.make_node("Shape", [x], [r + "/lead"], end=-1),
            ]
        r, m = quantized_rows[x], f"int8/matmul{converted}"
        nodes += [
            helper.make_node("MatMulIntegerToFloat", [r + "/q", wq, r + "/scale_col", w_scale], [m + "/scaled"],
                             domain="com.microsoft"),
            helper.make_node("Mul", [r + "/offset_col", colsum], [m + "/offset"]),
            helper.make_node("Sub", [m + "/scaled", m + "/offset"], [m + "/y"]),
            helper.make_node("Concat", [r + "/lead", constant(m + "/n", np.array([n], dtype=np.int64))],
                             [m + "/shape"], axis=0),
            helper.make_node("Reshape", [m + "/y", m + "/shape"], [node.output[0]]),
        ]
        converted += 1

    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in list(graph.initializer) + added if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    large = sum(init.ByteSize() for init in kept) > LARGE_GRAPH_BYTES
    onnx.save(model, str(target), save_as_external_data=large, location=target.name + ".data" if large else None)
