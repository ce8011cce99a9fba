#!/usr/bin/env python3
"""Write a random-weight vision encoder with the exact shape of CLIP ViT-B/32.

For benchmarks only: it costs what the real model costs (same ops, same FLOPs,
~350 MB of float32 weights) without downloading OpenAI's weights, but its
embeddings mean nothing. Not committed; generate it where you need it.

  pixel_values f32 [N,3,224,224] -> image_embeds f32 [N,512]
  conv 32x32/32 -> 49 patches + class token = 50 tokens, width 768, pos. emb.,
  ln_pre, 12 pre-LN residual blocks (12-head attention, MLP 3072, QuickGELU),
  ln_post on the class token, projection 768 -> 512 (no bias), as in OpenAI CLIP.

Usage: python scripts/make_vit_b32_random.py OUT_DIR
Writes OUT_DIR/vision.onnx and OUT_DIR/manifest.json (name "vit-b-32-random").
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 32
IMAGE = 224
PATCH = 32
GRID = IMAGE // PATCH  # 7
TOKENS = GRID * GRID + 1  # 50, with the class token
WIDTH = 768
LAYERS = 12
HEADS = 12
HEAD_DIM = WIDTH // HEADS  # 64
MLP = 4 * WIDTH  # 3072
EMBED = 512
OPSET = 17  # LayerNormalization is a standard op from 17
IR_VERSION = 8

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(value, n))
        return n

    def weight(self, hint: str, shape: tuple[int, ...], std: float) -> str:
        # float32 directly: avoids a 700 MB float64 intermediate for the whole model.
        w = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
        return self.const(hint, w)

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def layer_norm(self, x: str, hint: str) -> str:
        scale = self.const(hint + "_g", np.ones(WIDTH, np.float32))
        bias = self.const(hint + "_b", np.zeros(WIDTH, np.float32))
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=1e-5)

    def linear(self, x: str, fan_in: int, fan_out: int, hint: str, bias: bool = True) -> str:
        y = self.op("MatMul", [x, self.weight(hint + "_w", (fan_in, fan_out), fan_in**-0.5)])
        if bias:
            y = self.op("Add", [y, self.const(hint + "_b", np.zeros(fan_out, np.float32))])
        return y

    def shape_const(self, dims: list[int]) -> str:
        return self.const("shape", np.array(dims, dtype=np.int64))

    def attention(self, x: str, i: int) -> str:
        qkv = self.linear(x, WIDTH, 3 * WIDTH, f"l{i}_qkv")  # [N,50,2304]
        # 0 in a Reshape shape copies that input dim: keeps the batch dynamic.
        qkv = self.op("Reshape", [qkv, self.shape_const([0, 0, 3, HEADS, HEAD_DIM])])
        qkv = self.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])  # [3,N,H,50,64]
        q, k, v = (self.op("Gather", [qkv, self.const("idx", np.array(j, np.int64))], axis=0) for j in range(3))
        kt = self.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [q, kt])
        scores = self.op("Mul", [scores, self.const("scale", np.array(HEAD_DIM**-0.5, np.float32))])
        probs = self.op("Softmax", [scores], axis=-1)
        ctx = self.op("MatMul", [probs, v])  # [N,H,50,64]
        ctx = self.op("Transpose", [ctx], perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.shape_const([0, 0, WIDTH])])
        return self.linear(ctx, WIDTH, WIDTH, f"l{i}_out")

    def mlp(self, x: str, i: int) -> str:
        h = self.linear(x, WIDTH, MLP, f"l{i}_fc")
        # QuickGELU, x * sigmoid(1.702 x), as OpenAI's CLIP uses.
        s = self.op("Sigmoid", [self.op("Mul", [h, self.const("qg", np.array(1.702, np.float32))])])
        h = self.op("Mul", [h, s])
        return self.linear(h, MLP, WIDTH, f"l{i}_proj")


def build() -> onnx.ModelProto:
    b = Builder(SEED)
    conv_w = b.weight("conv1", (WIDTH, 3, PATCH, PATCH), (3 * PATCH * PATCH) ** -0.5)
    x = b.op("Conv", ["pixel_values", conv_w], kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH])  # [N,768,7,7]
    x = b.op("Reshape", [x, b.shape_const([0, WIDTH, GRID * GRID])])
    x = b.op("Transpose", [x], perm=[0, 2, 1])  # [N,49,768]

    # Class token broadcast to the (dynamic) batch: Expand to [N,1,768].
    batch = b.op("Shape", ["pixel_values"], start=0, end=1)
    cls_shape = b.op("Concat", [batch, b.shape_const([1, WIDTH])], axis=0)
    cls = b.op("Expand", [b.weight("class_embedding", (1, 1, WIDTH), WIDTH**-0.5), cls_shape])
    x = b.op("Concat", [cls, x], axis=1)  # [N,50,768]
    x = b.op("Add", [x, b.weight("positional_embedding", (TOKENS, WIDTH), WIDTH**-0.5)])
    x = b.layer_norm(x, "ln_pre")

    for i in range(LAYERS):
        x = b.op("Add", [x, b.attention(b.layer_norm(x, f"l{i}_ln1"), i)])
        x = b.op("Add", [x, b.mlp(b.layer_norm(x, f"l{i}_ln2"), i)])

    cls_out = b.op("Gather", [x, b.const("idx", np.array(0, np.int64))], axis=1)  # [N,768]
    cls_out = b.layer_norm(cls_out, "ln_post")
    proj = b.weight("proj", (WIDTH, EMBED), WIDTH**-0.5)
    b.nodes.append(helper.make_node("MatMul", [cls_out, proj], ["image_embeds"]))

    graph = helper.make_graph(
        b.nodes,
        "vit_b_32_random",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, IMAGE, IMAGE])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["N", EMBED])],
        initializer=b.inits,
    )
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="imgidx/scripts/make_vit_b32_random.py",
        producer_version="1",
    )
    m.ir_version = IR_VERSION
    return m


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: make_vit_b32_random.py OUT_DIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    m = build()
    # Under protobuf's 2 GB limit, so one self-contained file; check by path
    # because check_model on an in-memory proto this large is refused.
    path = out / "vision.onnx"
    path.write_bytes(m.SerializeToString())
    onnx.checker.check_model(str(path))
    params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    manifest = {
        "name": "vit-b-32-random",
        "embedding_dim": EMBED,
        "image_size": IMAGE,
        "mean": CLIP_MEAN,
        "std": CLIP_STD,
        "context_length": 77,
        "vision": {"file": "vision.onnx", "input": "pixel_values", "output": "image_embeds"},
        "text": None,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB, {params / 1e6:.1f} M parameters)")


if __name__ == "__main__":
    main()
