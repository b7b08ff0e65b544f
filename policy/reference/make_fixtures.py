#!/usr/bin/env python3
"""Reference fixtures for the policy crate, made with transformers on CPU.

Run: python3 policy/reference/make_fixtures.py
It creates (once) a venv at $VTHINKER_REF_VENV (default ~/.cache/vthinker-rl/ref-venv) with
torch, transformers, pillow and safetensors from the package registry, re-runs itself there,
and writes policy/tests/fixtures/. The outputs are committed; CI never needs torch.

Fixtures so far:
- preprocess.safetensors: for each test image (made here, saved as PNG beside it), PIL's
  bicubic resize to the smart_resize size, and transformers' pixel_values and image_grid_thw.
"""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
VENV = Path(os.environ.get("VTHINKER_REF_VENV", Path.home() / ".cache" / "vthinker-rl" / "ref-venv"))
PACKAGES = ["torch", "transformers", "pillow", "safetensors", "numpy"]


def ensure_venv():
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    check = subprocess.run([str(py), "-c", "import torch, transformers, PIL, safetensors"], capture_output=True)
    if check.returncode != 0:
        subprocess.check_call([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES])
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


def test_images():
    """Small synthetic RGB images: gradients plus shapes, odd sizes, non-square."""
    import numpy as np
    from PIL import Image, ImageDraw

    specs = {"wide_61x47": (61, 47), "tall_90x250": (90, 250), "big_300x200": (300, 200)}
    out = {}
    for name, (w, h) in specs.items():
        y, x = np.mgrid[0:h, 0:w]
        arr = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 7) % 256], -1)
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
        d = ImageDraw.Draw(img)
        d.ellipse([w // 5, h // 5, w // 2, h // 2], outline=(255, 0, 0), width=2)
        d.line([(0, h - 1), (w - 1, 0)], fill=(0, 0, 0), width=1)
        out[name] = img
    return out


def preprocess_fixture():
    import numpy as np
    import torch
    from safetensors.numpy import save_file
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
        smart_resize,
    )

    # Small max_pixels keeps the fixture small; the code path is the same as the 7B's.
    min_pixels, max_pixels = 56 * 56, 28 * 28 * 24
    proc = Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    tensors = {}
    for name, img in test_images().items():
        img.save(FIXTURES / f"{name}.png")
        h, w = smart_resize(img.height, img.width, 28, min_pixels, max_pixels)
        resized = img.resize((w, h), resample=3)  # PIL BICUBIC, as the processor does
        out = proc(images=[img], return_tensors="np")
        tensors[f"{name}.resized"] = np.asarray(resized, dtype=np.uint8)
        tensors[f"{name}.pixel_values"] = out["pixel_values"].astype(np.float32)
        tensors[f"{name}.grid_thw"] = out["image_grid_thw"].astype(np.int64)
        print(name, img.size, "->", (w, h), out["pixel_values"].shape, out["image_grid_thw"].tolist())
    tensors["min_max_pixels"] = np.array([min_pixels, max_pixels], dtype=np.int64)
    save_file(tensors, str(FIXTURES / "preprocess.safetensors"))
    del torch


def tiny_config():
    """The tiny Qwen2.5-VL the parity fixtures use: GQA (4 query / 2 key-value heads), M-RoPE
    sections [2, 3, 3], 4 vision blocks with window attention and full attention in blocks 1
    and 3, the 2x2 merger."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
            max_position_embeddings=4096, bos_token_id=1004, eos_token_id=1005,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            window_size=56, fullatt_block_indexes=[1, 3], patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        vision_start_token_id=1000, vision_end_token_id=1001, image_token_id=1002, video_token_id=1003,
        tie_word_embeddings=False,
    )


def config_fixture():
    cfg = tiny_config()
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    cfg.save_pretrained(FIXTURES / "tiny")
    print("tiny config:", FIXTURES / "tiny" / "config.json")


def rope_index_fixture():
    """M-RoPE position ids of a text + image + text + image + text sequence, from
    transformers' get_rope_index."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file
    from transformers import Qwen2_5_VLModel

    cfg = tiny_config()
    model = Qwen2_5_VLModel(cfg)
    grids = [[1, 4, 4], [1, 8, 12]]
    ids, types = [], []
    def text(n):
        ids.extend(range(10, 10 + n)); types.extend([0] * n)
    def image(g):
        ids.append(cfg.vision_start_token_id); types.append(0)
        n = g[0] * g[1] * g[2] // 4
        ids.extend([cfg.image_token_id] * n); types.extend([1] * n)
        ids.append(cfg.vision_end_token_id); types.append(0)
    text(5); image(grids[0]); text(3); image(grids[1]); text(2)
    input_ids = torch.tensor([ids])
    pos, delta = model.get_rope_index(
        input_ids, torch.tensor([types]), image_grid_thw=torch.tensor(grids)
    )
    save_file(
        {
            "input_ids": np.array(ids, dtype=np.int64),
            "grid_thw": np.array(grids, dtype=np.int64),
            "position_ids": pos[:, 0, :].numpy().astype(np.int64),
            "delta": delta.reshape(-1).numpy().astype(np.int64),
        },
        str(FIXTURES / "rope_index.safetensors"),
    )
    print("rope index:", pos.shape, "delta", delta.tolist())


def main():
    ensure_venv()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    preprocess_fixture()
    config_fixture()
    rope_index_fixture()


if __name__ == "__main__":
    main()
