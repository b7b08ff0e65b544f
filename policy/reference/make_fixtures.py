#!/usr/bin/env python3
"""Reference fixtures for the policy crate, made with transformers on CPU.

Run: python3 policy/reference/make_fixtures.py
It creates (once) a venv at $VTHINKER_REF_VENV (default ~/.cache/vthinker-rl/ref-venv) with
torch, transformers, pillow and safetensors from the package registry, re-runs itself there,
and writes policy/tests/fixtures/. The outputs are committed; CI never needs torch.

Fixtures:
- preprocess.safetensors: for each test image (made here, saved as PNG beside it), PIL's
  bicubic resize to the smart_resize size, and transformers' pixel_values and image_grid_thw.
- tiny/: a tiny random Qwen2_5_VLForConditionalGeneration (config.json, model.safetensors) and
  a byte-level BPE tokenizer.json trained here with Qwen's special tokens at ids 1000..1006.
- rope_index.safetensors: get_rope_index on a text + image + text + image + text sequence.
- parity.safetensors: for a text-only prompt and an image+text prompt (non-square image), the
  input ids, pixel values, grid, the logits of every prompt position and 16 greedy tokens.

  python3 policy/reference/make_fixtures.py --check-saved DIR
loads a model directory written by the Rust side with transformers and compares its logits on
both prompts with parity.safetensors (the "transformers loads what we save" check).
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
    os.execv(str(py), [str(py), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


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


SPECIAL_TOKENS = [
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
    "<|endoftext|>", "<|im_end|>", "<|im_start|>",
]
# Qwen2's pre-tokenizer split (digits one by one, letters, punctuation runs, newlines, spaces).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def tiny_model():
    """The tiny model with weights drawn from a fixed torch seed, in eval mode."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(1234)
    cfg = tiny_config()
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    # transformers' init gives norms weight 1 and biases 0; perturb them so the test sees
    # whether each is loaded in the right place.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_q" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def train_tokenizer():
    """A byte-level BPE like Qwen2's (same split regex, NFC, byte-level decoding), 1000 learned
    tokens, then Qwen's special tokens at 1000..1006."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    corpus = tokenizer_corpus()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    assert tok.get_vocab_size() == 1000, tok.get_vocab_size()
    tok.add_special_tokens(SPECIAL_TOKENS)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == 1000 + i, (t, tok.token_to_id(t))
    return tok


def tokenizer_corpus():
    """A fixed, generated corpus in the policy's domain: questions about drawn shapes, thinking,
    Python that edits images, answers. The same on every run, so the tokenizer is too."""
    import random

    rng = random.Random(0)
    colors = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple", "gray"]
    shapes = ["circle", "square", "triangle", "rectangle", "line", "point", "polygon", "bar"]
    words = (
        "the a an of to in is it that this with for on at by from as be are was which what how "
        "many much where angle length distance centre center count measure draw mark box join "
        "between largest smallest image picture figure chart value axis label point points "
        "answer question think step first then next finally so therefore because we need to "
        "find compute the result is approximately degrees pixels units left right top bottom "
        "above below inside outside segment line through parallel perpendicular radius area "
        "triangle quadrilateral hexagon pentagon diagonal vertex vertices edge edges side sides "
        "height width diameter circumference perimeter volume ratio proportion percent total sum "
        "difference product quotient average mean median maximum minimum greater less equal "
        "horizontal vertical slope intercept coordinate coordinates origin grid cell row column "
        "table legend title scale tick bars pie slice sector arc chord tangent secant bisector "
        "median altitude midpoint intersection symmetric reflection rotation translation shift "
        "color colour shade dark light bright pale solid dashed dotted thick thin small large "
        "tiny huge short long wide narrow near far close closest farthest nearest every each "
        "both either neither none some all only also not but or and if then when while until "
        "after before during since there here these those they them their its our your my "
        "has have had do does did can could should would will shall may might must let us "
        "given known unknown shown labelled labeled marked drawn highlighted selected output "
        "sandbox code python numpy pillow array pixel pixels channel mask threshold contour "
        "detect locate crop zoom rotate resize enhance filter edit save open load print show "
        "correct wrong true false yes no one two three four five six seven eight nine ten "
        "hundred thousand half quarter third double twice once again more most fewer fewest"
    ).split()
    code = [
        "from PIL import Image, ImageDraw", "import numpy as np", "import math",
        "img = Image.open(image_path).convert('RGB')", "draw = ImageDraw.Draw(img)",
        "arr = np.array(img)", "mask = (arr[:, :, 0] > 200) & (arr[:, :, 1] < 60)",
        "ys, xs = np.nonzero(mask)", "print(xs.mean(), ys.mean())",
        "draw.line([(x0, y0), (x1, y1)], fill=(255, 0, 0), width=2)",
        "draw.rectangle([left, top, right, bottom], outline=(0, 0, 255), width=3)",
        "draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline='green')",
        "img.save(os.path.join(output_dir, 'edited.png'))", "print(len(contours))",
        "angle = math.degrees(math.atan2(dy, dx))", "d = math.hypot(x1 - x0, y1 - y0)",
        "for i in range(len(points)):", "    x, y = points[i]", "if count > 0:", "else:",
    ]
    tags = ["<think>", "</think>", "<code>", "</code>", "<sandbox_output>", "</sandbox_output>",
            "<answer>", "</answer>", "\\boxed{", "}"]
    corpus = []
    for _ in range(3000):
        n = rng.randint(1, 40)
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        thing = f"the {rng.choice(colors)} {rng.choice(shapes)}"
        number = f"{rng.randint(0, 999)}" if rng.random() < 0.5 else f"{rng.uniform(0, 360):.1f}"
        block = "\n".join(rng.sample(code, rng.randint(2, 6)))
        tag = rng.choice(tags)
        corpus.append(
            f"{sentence.capitalize()} {thing}? {tag}There are {n} {rng.choice(shapes)}s; "
            f"{thing} is at ({rng.randint(0, 223)}, {rng.randint(0, 223)}). {number}\n"
            f"<code>\n{block}\n</code>\n"
        )
    return corpus


def config_fixture():
    """tiny/: config.json, model.safetensors, tokenizer.json."""
    out = FIXTURES / "tiny"
    model = tiny_model()
    model.save_pretrained(out)
    tok = train_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    processor_fixture()
    # The embedded default (random weights from a seed on the Rust side) is the same config
    # and tokenizer.
    assets = HERE.parent / "assets" / "tiny"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "config.json").write_text((out / "config.json").read_text())
    tok.save(str(assets / "tokenizer.json"))
    tokenizer_fixture(tok)
    print("tiny model:", out)
    return model


def processor_fixture():
    """tiny/preprocessor_config.json: images at most 224x224 (64 vision tokens), as the
    embedded tiny default (`ProcessorConfig::tiny`)."""
    from transformers import Qwen2VLImageProcessor

    out = FIXTURES / "tiny"
    Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=224 * 224).save_pretrained(out)


def tokenizer_fixture(tok):
    """Strings (plain, code, unicode, a rendered chat with special tokens) and their ids."""
    import json

    chat = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>What is the angle at B?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    texts = [
        "Hello world", "  leading spaces and\ttabs\n\nnew lines",
        "<code>\nimport numpy as np\nprint(np.arange(12).sum())\n</code>",
        "naïve café — 3.14159 × 2 = 6.28", chat,
    ]
    cases = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
    (FIXTURES / "tokenizer_cases.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1))


def parity_inputs(cfg):
    """A text-only prompt and an image + text prompt, as ids (no tokenizer needed)."""
    import numpy as np
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    text_ids = [1006, 17, 300, 45, 999, 512, 8, 77, 640, 1005, 1006, 123, 456]
    img = Image.open(FIXTURES / "wide_61x47.png").convert("RGB").resize((150, 90), resample=3)
    img.save(FIXTURES / "parity_150x90.png")
    proc = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 24})
    out = proc(images=[img], return_tensors="np")
    grid = out["image_grid_thw"][0].tolist()
    n = grid[0] * grid[1] * grid[2] // 4
    image_ids = [1006, 5, 66, 700, cfg.vision_start_token_id] + [cfg.image_token_id] * n
    image_ids += [cfg.vision_end_token_id, 31, 415, 92, 1005, 1006, 250]
    return {
        "text": {"ids": text_ids},
        "image": {
            "ids": image_ids,
            "pixel_values": out["pixel_values"].astype(np.float32),
            "grid_thw": np.array([grid], dtype=np.int64),
        },
    }


def run_prompt(model, cfg, prompt, steps):
    """Logits of every prompt position, and `steps` greedy tokens (full forward each step)."""
    import torch

    ids = list(prompt["ids"])
    logits0 = None
    for _ in range(steps + 1):
        input_ids = torch.tensor([ids])
        kwargs = {"mm_token_type_ids": (input_ids == cfg.image_token_id).int()}
        if "pixel_values" in prompt:
            kwargs["pixel_values"] = torch.from_numpy(prompt["pixel_values"])
            kwargs["image_grid_thw"] = torch.from_numpy(prompt["grid_thw"])
        with torch.no_grad():
            logits = model(input_ids=input_ids, **kwargs).logits[0]
        if logits0 is None:
            logits0 = logits.numpy().copy()
        ids.append(int(logits[-1].argmax()))
    return logits0, ids[len(prompt["ids"]):len(prompt["ids"]) + steps]


def parity_fixture(model):
    import numpy as np
    from safetensors.numpy import save_file

    cfg = model.config
    tensors = {}
    for name, prompt in parity_inputs(cfg).items():
        logits, greedy = run_prompt(model, cfg, prompt, 16)
        tensors[f"{name}.input_ids"] = np.array(prompt["ids"], dtype=np.int64)
        tensors[f"{name}.logits"] = logits.astype(np.float32)
        tensors[f"{name}.greedy"] = np.array(greedy, dtype=np.int64)
        if "pixel_values" in prompt:
            tensors[f"{name}.pixel_values"] = prompt["pixel_values"]
            tensors[f"{name}.grid_thw"] = prompt["grid_thw"]
        print(f"parity {name}: {len(prompt['ids'])} tokens, greedy {greedy}")
    save_file(tensors, str(FIXTURES / "parity.safetensors"))


def check_saved(directory):
    """Load a directory written by the Rust side and compare logits with the fixtures."""
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(directory, dtype=torch.float32).eval()
    ref = load_file(str(FIXTURES / "parity.safetensors"))
    worst = 0.0
    for name in ["text", "image"]:
        prompt = {"ids": ref[f"{name}.input_ids"].tolist()}
        if f"{name}.pixel_values" in ref:
            prompt["pixel_values"] = ref[f"{name}.pixel_values"]
            prompt["grid_thw"] = ref[f"{name}.grid_thw"]
        logits, greedy = run_prompt(model, model.config, prompt, 16)
        diff = float(np.abs(logits - ref[f"{name}.logits"]).max())
        same = greedy == ref[f"{name}.greedy"].tolist()
        print(f"{name}: max |logits - fixture| = {diff:.3e}, greedy tokens equal: {same}")
        worst = max(worst, diff)
        if not same:
            worst = float("inf")
    if worst > 1e-4:
        sys.exit(f"transformers does not reproduce the fixtures from {directory}")
    print("transformers loads", directory, "and reproduces the fixtures")


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
    if len(sys.argv) == 3 and sys.argv[1] == "--check-saved":
        check_saved(sys.argv[2])
        return
    preprocess_fixture()
    model = config_fixture()
    rope_index_fixture()
    parity_fixture(model)


if __name__ == "__main__":
    main()
