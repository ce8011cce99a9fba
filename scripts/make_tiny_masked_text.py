#!/usr/bin/env python3
"""Write the tiny masked text graph: tests/fixtures/models/tiny-text-masked/text.onnx.

Not a real CLIP: a seeded-random ONNX graph with the interface of Hugging Face's
CLIP text export (as in Qdrant/clip-ViT-B-32-text), which takes an attention
mask beside the token ids and has a second, unused output:

  text.onnx  input_ids i64 [N,77], attention_mask i64 [N,77]
             -> text_embeds f32 [N,64], last_hidden_state f32 [N,77,64]
      ids mod 257 -> Gather from a [257,64] table -> mean over positions where
      the mask is 1 (the ids themselves never decide what is averaged)

Because only the mask selects positions, a test can tell whether the encoder
feeds the right mask: ids after the end-of-text token change the vector unless
the mask zeroes them. Same embedding width (64) as tiny-clip, so the graph pairs
with tiny-clip's vision.onnx in one model directory.

Deterministic (fixed seed and producer fields): re-running reproduces the
committed file byte for byte. Checks itself with onnxruntime when it is installed.

Usage: python scripts/make_tiny_masked_text.py [OUT_DIR]
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20240917
DIM = 64  # tiny-clip's embedding_dim
CONTEXT = 77
# Prime modulus: spreads CLIP's ids (up to 49407) over the table without the
# structured collisions of a power of two; 257*64*4 bytes keeps the file ~66 KB.
TABLE = 257
OPSET = 17
IR_VERSION = 8


def graph(rng: np.random.Generator) -> onnx.ModelProto:
    table = rng.standard_normal((TABLE, DIM)).astype(np.float32)
    consts = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array(TABLE, dtype=np.int64), "modulus"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "emb_axis"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Mod", ["input_ids", "modulus"], ["rows"]),
        helper.make_node("Gather", ["table", "rows"], ["tok"], axis=0),  # [N,77,64]
        helper.make_node("Identity", ["tok"], ["last_hidden_state"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),  # [N,77]
        helper.make_node("Unsqueeze", ["mask", "emb_axis"], ["mask3"]),  # [N,77,1]
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["total"], keepdims=0),  # [N,64]
        helper.make_node("ReduceSum", ["mask", "seq_axis"], ["count"], keepdims=1),  # [N,1]
        # An all-zero mask divides by 1 and yields zeros instead of NaN.
        helper.make_node("Max", ["count", "one"], ["denom"]),
        helper.make_node("Div", ["total", "denom"], ["text_embeds"]),
    ]
    g = helper.make_graph(
        nodes,
        "tiny_masked_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", CONTEXT]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", CONTEXT]),
        ],
        [
            # text_embeds first, as in the Hugging Face export.
            helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["N", DIM]),
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["N", CONTEXT, DIM]),
        ],
        initializer=consts,
    )
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="imgidx/scripts/make_tiny_masked_text.py",
        producer_version="1",
    )
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def self_check(path: Path) -> None:
    """The output must follow the mask, not the ids: the property the Rust tests rely on."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed; skipping the self-check")
        return
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = np.zeros((1, CONTEXT), dtype=np.int64)
    ids[0, :6] = [49406, 320, 1125, 49407, 500, 600]  # junk after end-of-text
    upto_eot = np.zeros_like(ids)
    upto_eot[0, :4] = 1
    nonzero = (ids != 0).astype(np.int64)
    a = sess.run(["text_embeds"], {"input_ids": ids, "attention_mask": upto_eot})[0]
    b = sess.run(["text_embeds"], {"input_ids": ids, "attention_mask": nonzero})[0]
    assert a.shape == (1, DIM), a.shape
    assert not np.allclose(a, b), "output must depend on the mask"
    clean = ids.copy()
    clean[0, 4:] = 0
    c = sess.run(["text_embeds"], {"input_ids": clean, "attention_mask": upto_eot})[0]
    assert np.array_equal(a, c), "masked-out ids must not matter"
    print("self-check passed: output follows the attention mask")


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "tests/fixtures/models/tiny-text-masked"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "text.onnx"
    path.write_bytes(graph(np.random.default_rng(SEED)).SerializeToString())
    print(f"wrote {path}")
    self_check(path)


if __name__ == "__main__":
    main()
