#!/usr/bin/env python3
"""Write the tiny CLIP-shaped test model: tests/fixtures/models/tiny-clip/.

Not a real CLIP: two small seeded-random ONNX graphs with CLIP's interface
(input/output names, dtypes, dynamic batch), so the Rust encoders and the whole
pipeline can be tested in seconds without downloading ~600 MB of weights.

  vision.onnx  pixel_values f32 [N,3,64,64] -> image_embeds f32 [N,64]
      8x8 average pool (192 features) -> MatMul+bias -> Tanh -> MatMul+bias
  text.onnx    input_ids i64 [N,77] -> text_embeds f32 [N,64]
      ids mod 509 -> Gather from a [509,64] table -> mean over non-zero ids

  bpe_simple_vocab_16e6.txt.gz  OpenAI CLIP's real BPE merges (MIT), named by the
      manifest's "tokenizer" field; not generated: copied from the committed fixture
      when OUT_DIR is elsewhere (scripts/tokenizer_reference.py checks it against
      the openai-clip package).

Deterministic: fixed seed, fixed producer fields, so re-running reproduces the
committed files byte for byte (tests can then trust the fixture never drifts).

Usage: python scripts/make_tiny_clip.py [OUT_DIR]
       python scripts/make_tiny_clip.py --second [OUT_DIR]

`--second` writes tests/fixtures/models/tiny-clip-b/ instead: the same shapes with
another seed and 32-dim vectors, named "tiny-clip-b" — the model a test switches a
collection to (a model switch that also changes the vector size). Its manifest names
tiny-clip's BPE file (`../tiny-clip/...`) rather than holding a second copy.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20240611
SECOND_SEED = 20261203
IMAGE_SIZE = 64
POOL = 8  # 64/8 = 8x8 cells per channel -> 192 pooled features
HIDDEN = 128
DIM = 64
CONTEXT = 77
# Prime table size: CLIP ids run to 49407; a prime modulus spreads them
# without the structured collisions a power of two would give, and keeps
# the table (509*64*4 = 130 KB) under the fixture size budget.
TABLE = 509
OPSET = 17  # axes-as-input ReduceSum/Unsqueeze; well inside what ORT 1.31 loads
IR_VERSION = 8
VOCAB = "bpe_simple_vocab_16e6.txt.gz"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def model(graph: onnx.GraphProto) -> onnx.ModelProto:
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="imgidx/scripts/make_tiny_clip.py",
        producer_version="1",
    )
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def vision(rng: np.random.Generator, dim: int) -> onnx.ModelProto:
    feats = 3 * (IMAGE_SIZE // POOL) ** 2
    # Scaled so pre-activations are O(1) for normalised pixels: Tanh stays
    # out of saturation and distinct images stay distinct.
    w1 = (rng.standard_normal((feats, HIDDEN)) / np.sqrt(feats)).astype(np.float32)
    b1 = (0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
    w2 = (rng.standard_normal((HIDDEN, dim)) / np.sqrt(HIDDEN)).astype(np.float32)
    # Non-zero bias so a flat mean-grey image still gets a non-zero vector.
    b2 = (0.1 * rng.standard_normal(dim)).astype(np.float32)

    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["N", dim])],
        initializer=[
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    return model(graph)


def text(rng: np.random.Generator, dim: int) -> onnx.ModelProto:
    table = rng.standard_normal((TABLE, dim)).astype(np.float32)
    consts = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array(TABLE, dtype=np.int64), "modulus"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "pad_id"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "emb_axis"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Mod", ["input_ids", "modulus"], ["rows"]),
        helper.make_node("Gather", ["table", "rows"], ["tok"], axis=0),  # [N,77,64]
        # 0 is CLIP's padding id: average only over real tokens.
        helper.make_node("Equal", ["input_ids", "pad_id"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["is_tok"]),
        helper.make_node("Cast", ["is_tok"], ["mask"], to=TensorProto.FLOAT),  # [N,77]
        # [N,77,1] so the mask broadcasts over the embedding dims.
        helper.make_node("Unsqueeze", ["mask", "emb_axis"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["total"], keepdims=0),  # [N,64]
        helper.make_node("ReduceSum", ["mask", "seq_axis"], ["count"], keepdims=1),  # [N,1]
        # An all-padding row divides by 1 and yields zeros instead of NaN.
        helper.make_node("Max", ["count", "one"], ["denom"]),
        helper.make_node("Div", ["total", "denom"], ["text_embeds"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", CONTEXT])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["N", dim])],
        initializer=consts,
    )
    return model(graph)


def main() -> None:
    args = sys.argv[1:]
    second = "--second" in args
    args = [a for a in args if a != "--second"]
    root = Path(__file__).resolve().parent.parent
    first_fixture = root / "tests/fixtures/models/tiny-clip"
    name, seed, dim = ("tiny-clip-b", SECOND_SEED, 32) if second else ("tiny-clip", SEED, DIM)
    fixture = root / "tests/fixtures/models" / name
    out = Path(args[0]) if args else fixture
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = VOCAB
    if second and out.resolve() == fixture.resolve():
        tokenizer = f"../tiny-clip/{VOCAB}"
    elif out.resolve() != first_fixture.resolve():
        shutil.copyfile(first_fixture / VOCAB, out / VOCAB)
    rng = np.random.default_rng(seed)
    # Order matters for determinism: vision draws from the generator first.
    (out / "vision.onnx").write_bytes(vision(rng, dim).SerializeToString())
    (out / "text.onnx").write_bytes(text(rng, dim).SerializeToString())
    manifest = {
        "name": name,
        "embedding_dim": dim,
        "image_size": IMAGE_SIZE,
        "mean": CLIP_MEAN,
        "std": CLIP_STD,
        "context_length": CONTEXT,
        "vision": {"file": "vision.onnx", "input": "pixel_values", "output": "image_embeds"},
        "text": {"file": "text.onnx", "input": "input_ids", "output": "text_embeds"},
        "tokenizer": tokenizer,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
