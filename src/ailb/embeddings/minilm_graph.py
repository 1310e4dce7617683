"""all-MiniLM-L6-v2 as an ONNX graph for onnxruntime, built from the shipped safetensors weights.

No PyPI package ships the model as ONNX and exporting it needs torch, so the graph is written
here: BERT's embeddings, then six layers of onnxruntime's fused transformer kernels (Attention,
SkipLayerNormalization, BiasGelu: the exact erf GELU). Measured against the same model written
with numpy on this machine: 1.6x less CPU for a short query and 1.3x for batches of chunks, and
onnxruntime's threads can be bounded and kept from spinning inside a gateway.

Inputs: `ids` and `mask` (int64, batch x tokens); output `hidden` (batch x tokens x 384), which
the caller mean-pools over the mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

LAYERS = 6
HEADS = 12
_EPS = 1e-12
_MS = "com.microsoft"


def build_graph(w: Mapping[str, Any]) -> bytes:
    """The serialized ModelProto, weights included (about 90 MB)."""
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def init(name: str, value: Any) -> str:
        dtype = np.int64 if np.asarray(value).dtype == np.int64 else np.float32
        inits.append(numpy_helper.from_array(np.array(value, dtype=dtype, order="C"), name))
        return name

    def node(op: str, inputs: list[str], output: str, ms: bool = False, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], domain=_MS if ms else "", **attrs))
        return output

    e = "embeddings."
    init("zero", np.array([0], np.int64))
    init("one", np.array(1, np.int64))
    # Positions 0..L-1: the first L rows of the position table.
    length = node("Gather", [node("Shape", ["ids"], "shape"), "one"], "L", axis=0)
    length = node("Unsqueeze", [length, "zero"], "L1")
    pos = init("pos", w[e + "position_embeddings.weight"])
    positions = node("Slice", [pos, "zero", length], "pos_l")
    words = node("Gather", [init("word", w[e + "word_embeddings.weight"]), "ids"], "words")
    x = node("Add", [words, positions], "e1")
    x = node("Add", [x, init("type0", w[e + "token_type_embeddings.weight"][0])], "e2")
    gamma, beta = init("eg", w[e + "LayerNorm.weight"]), init("eb", w[e + "LayerNorm.bias"])
    x = node("LayerNormalization", [x, gamma, beta], "x", axis=-1, epsilon=_EPS)
    mask = node("Cast", ["mask"], "mask32", to=TensorProto.INT32)  # padding gets no attention

    def skip_norm(y: str, skip: str, prefix: str, bias: str, out: str) -> str:
        """LayerNorm(y + bias + skip), one fused kernel."""
        g = init(out + "_g", w[prefix + "LayerNorm.weight"])
        b = init(out + "_b", w[prefix + "LayerNorm.bias"])
        return node("SkipLayerNormalization", [y, skip, g, b, bias], out, ms=True, epsilon=_EPS)

    for i in range(LAYERS):
        p, a = f"encoder.layer.{i}.", f"encoder.layer.{i}.attention."
        qkv = ("query", "key", "value")
        qkv_w = init(f"qkv_w{i}", np.concatenate([w[f"{a}self.{n}.weight"].T for n in qkv], 1))
        qkv_b = init(f"qkv_b{i}", np.concatenate([w[f"{a}self.{n}.bias"] for n in qkv]))
        att = node("Attention", [x, qkv_w, qkv_b, mask], f"att{i}", ms=True, num_heads=HEADS)
        out = node("MatMul", [att, init(f"out_w{i}", w[f"{a}output.dense.weight"].T)], f"o{i}")
        out_b = init(f"out_b{i}", w[f"{a}output.dense.bias"])
        x = skip_norm(out, x, f"{a}output.", out_b, f"x1_{i}")
        up = node("MatMul", [x, init(f"up_w{i}", w[f"{p}intermediate.dense.weight"].T)], f"u{i}")
        up_b = init(f"up_b{i}", w[f"{p}intermediate.dense.bias"])
        up = node("BiasGelu", [up, up_b], f"gelu{i}", ms=True)
        down = node("MatMul", [up, init(f"down_w{i}", w[f"{p}output.dense.weight"].T)], f"d{i}")
        down_b = init(f"down_b{i}", w[f"{p}output.dense.bias"])
        x = skip_norm(down, x, f"{p}output.", down_b, f"x2_{i}")
    node("Identity", [x], "hidden")
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "tokens", 384])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(_MS, 1)]
    )
    return bytes(model.SerializeToString())
