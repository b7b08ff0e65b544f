#!/usr/bin/env python3
"""PyTorch side of `scripts/gpu-check`: a test model, transformers' reference logits, baselines.

Before the Rust binary runs on the GPU machine, this script
  (a) makes a Qwen2.5-VL with Qwen2.5-VL-7B's text widths but few layers (random weights,
      torch seed 0, float32) and saves it as an HF checkpoint in DIR/model;
  (b) saves transformers' logits for a fixed 64-token text prompt (float32 and bfloat16, eager
      attention) and 16 greedy tokens to DIR/reference.safetensors;
  (c) unless --skip-bench, measures PyTorch baselines on the same device: batched greedy decode
      (bf16, sdpa) and one training step (f32 and bf16, AdamW, vision tower frozen);
and writes everything to DIR/torch.json (written again after each section). Progress goes to
stderr; stdout gets only the path of torch.json.

  python3 scripts/gpu_check/torch_side.py --out DIR [--layers 2] [--vision-blocks 2] [--small]
      [--device cuda|cpu] [--skip-bench] [--peak-tflops 790] [--config-only]

--small uses tiny widths and bench sizes (a CPU smoke test); --config-only writes only
DIR/model/config.json and exits. Failing to make the model or the reference exits non-zero;
a failing measurement is recorded as {"error": ...} and the script goes on.
"""
import argparse
import copy
import gc
import inspect
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

START = time.perf_counter()
try:
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
except ImportError as e:
    sys.exit(f"torch_side.py: needs torch, transformers (with Qwen2.5-VL) and safetensors: {e}")

TF_VERSION = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
# transformers >= 4.56 takes `dtype=`; older releases only `torch_dtype=`.
DTYPE_KW = "dtype" if TF_VERSION >= (4, 56) else "torch_dtype"
ARCH = "Qwen2_5_VLForConditionalGeneration"
FLOPS_FORMULA = (
    "6*T*N_matmul + 6*L*T^2*q_dim, N_matmul = L*(hidden*q_dim + 2*hidden*kv_dim + q_dim*hidden"
    " + 3*hidden*intermediate) + hidden*vocab (lm_head); q_dim = heads*head_dim, kv_dim ="
    " kv_heads*head_dim; attention counts QK^T and AV, halved for causality, forward+backward"
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def make_config(args):
    """The Qwen2_5_VLConfig: 7B text widths (or tiny ones with --small), args.layers layers."""
    if args.small:
        text = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                    vocab_size=1024, max_position_embeddings=4096, bos_token_id=1004, eos_token_id=1005)
        section, theta = [2, 3, 3], 10000.0
        vision = dict(hidden_size=32, num_heads=2, out_hidden_size=64, intermediate_size=64)
        tokens = dict(image_token_id=1002, video_token_id=1003, vision_start_token_id=1000,
                      vision_end_token_id=1001)
    else:
        text = dict(hidden_size=3584, num_attention_heads=28, num_key_value_heads=4, intermediate_size=18944,
                    vocab_size=152064, max_position_embeddings=32768, bos_token_id=151643, eos_token_id=151645)
        section, theta = [16, 24, 24], 1000000.0
        vision = dict(hidden_size=1280, num_heads=16, out_hidden_size=3584, intermediate_size=3420)
        tokens = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                      vision_end_token_id=151653)
    text.update(num_hidden_layers=args.layers, rms_norm_eps=1e-6, hidden_act="silu", initializer_range=0.02)
    if TF_VERSION >= (5, 0):
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": theta, "mrope_section": section}
    else:  # transformers 4: rope_theta beside an "mrope" rope_scaling
        text.update(rope_theta=theta, rope_scaling={"type": "mrope", "mrope_section": section},
                    tie_word_embeddings=False)
    vision.update(depth=args.vision_blocks, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                  window_size=112, fullatt_block_indexes=[args.vision_blocks - 1], in_channels=3,
                  tokens_per_second=2, hidden_act="silu", initializer_range=0.02)
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **tokens)
    cfg.architectures = [ARCH]
    return cfg


def text_config(cfg):
    return getattr(cfg, "text_config", None) or cfg


def step_flops(cfg, tokens):
    """FLOPs of one training step (forward + backward) on `tokens` tokens; see FLOPS_FORMULA."""
    tc = text_config(cfg)
    h, L, T = tc.hidden_size, tc.num_hidden_layers, tokens
    head_dim = h // tc.num_attention_heads
    q_dim, kv_dim = tc.num_attention_heads * head_dim, tc.num_key_value_heads * head_dim
    n_matmul = L * (h * q_dim + 2 * h * kv_dim + q_dim * h + 3 * h * tc.intermediate_size) + h * tc.vocab_size
    return float(6 * T * n_matmul + 6 * L * T * T * q_dim)


def set_attn(model, impl):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:
        for c in (model.config, getattr(model.config, "text_config", None), getattr(model.config, "vision_config", None)):
            if c is not None:
                c._attn_implementation = impl


def no_stop(model):
    """Greedy generation without an end token, so every run makes exactly the tokens asked for."""
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.generation_config.do_sample = False


def reset_rope_state(model):
    inner = getattr(model, "model", model)
    if hasattr(inner, "rope_deltas"):
        inner.rope_deltas = None


class Gpu:
    """The cuda-only calls, as no-ops (or None) on the CPU."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def free(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def reset_peak(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak(self):
        return (torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()) if self.cuda else (None, None)

    def timed(self, fn):
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0


def err(e):
    """One line naming an exception (an OOM's first line says how much was asked for)."""
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"[:500]


def random_ids(cfg, shape, seed, dev):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, text_config(cfg).vocab_size - 1000, shape, generator=g).to(dev)


def load(model_dir, dtype, dev):
    kw = {DTYPE_KW: dtype, "attn_implementation": "sdpa"}
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir), **kw).to(dev).eval()
    no_stop(model)
    return model


def make_model(cfg, dev, model_dir):
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(dev):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    model = model.to(dtype=torch.float32).eval()
    set_attn(model, "eager")
    save_kw = {"max_shard_size": "1000GB"}  # one model.safetensors
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        save_kw["safe_serialization"] = True
    model.save_pretrained(str(model_dir), **save_kw)
    no_stop(model)
    return model, time.perf_counter() - t0


def reference(model, cfg, dev, path):
    """Logits (f32, then the model cast to bf16) and 16 greedy tokens (f32) for a fixed prompt."""
    t0 = time.perf_counter()
    vocab = text_config(cfg).vocab_size
    ids = torch.tensor([[(7 * i + 3) % (vocab - 1000) for i in range(64)]], dtype=torch.int64, device=dev)
    with torch.no_grad():
        logits_f32 = model(input_ids=ids, use_cache=False).logits.float().cpu()
        reset_rope_state(model)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                             min_new_tokens=16, do_sample=False, use_cache=True)
        greedy = out[0, ids.shape[1]:].cpu().to(torch.int64)
        if greedy.numel() != 16:
            raise RuntimeError(f"generate made {greedy.numel()} tokens, not 16")
        bf16 = copy.deepcopy(model).to(torch.bfloat16)
        reset_rope_state(bf16)
        logits_bf16 = bf16(input_ids=ids, use_cache=False).logits.float().cpu()
        del bf16
    save_file({"input_ids": ids.cpu().contiguous(), "logits_f32": logits_f32.contiguous(),
               "logits_bf16": logits_bf16.contiguous(), "greedy_f32": greedy.contiguous()}, str(path))
    log(f"reference: 64 prompt tokens, greedy {greedy.tolist()}, "
        f"max |f32 - bf16| = {(logits_f32 - logits_bf16).abs().max().item():.3g}")
    return time.perf_counter() - t0


def bench_decode(model, cfg, dev, gpu, rows_set, contexts, n):
    results = []
    for rows in rows_set:
        for ctx in contexts:
            entry = {"rows": rows, "context": ctx}
            try:
                ids = random_ids(cfg, (rows, ctx), 1000 * rows + ctx, dev)
                mask = torch.ones_like(ids)

                def gen(k):
                    reset_rope_state(model)
                    with torch.no_grad():
                        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=k,
                                             min_new_tokens=k, do_sample=False, use_cache=True)
                    if out.shape[1] != ctx + k:
                        raise RuntimeError(f"generate made {out.shape[1] - ctx} tokens, not {k}")

                gen(2)  # warm-up: prefill and one decode step
                gpu.reset_peak()
                t1 = gpu.timed(lambda: gen(1))
                tn = gpu.timed(lambda: gen(n + 1))
                decode_s = max(tn - t1, 1e-9)
                entry.update(new_tokens=n, dtype="bf16", tokens_per_s=rows * n / decode_s,
                             ms_per_step=1000 * decode_s / n, prefill_s=t1, peak_bytes=gpu.peak()[0])
                log(f"decode rows={rows} context={ctx}: {entry['tokens_per_s']:.1f} tok/s, "
                    f"{entry['ms_per_step']:.2f} ms/step, prefill {t1:.3f} s")
            except Exception as e:  # noqa: BLE001 - recorded, the bench goes on
                entry["error"] = err(e)
                log(f"decode rows={rows} context={ctx}: {entry['error']}")
            ids = mask = None
            gpu.free()
            results.append(entry)
    return results


def bench_train(model, cfg, dev, gpu, dtype_name, token_set, peak_flops):
    """One AdamW step (forward, backward, step, zero_grad) on 1 x T tokens; text trains, vision frozen."""
    results = []
    for name, p in model.named_parameters():
        p.requires_grad_("visual" not in name)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        opt = torch.optim.AdamW(params, lr=1e-6, fused=gpu.cuda)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(params, lr=1e-6)
    for T in token_set:
        entry = {"tokens": T, "dtype": dtype_name}
        try:
            ids = random_ids(cfg, (1, T), 7 + T, dev)

            def step():
                reset_rope_state(model)
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            gpu.timed(step)  # warm-up (also allocates the optimizer state)
            gpu.reset_peak()
            sec = statistics.median(gpu.timed(step) for _ in range(3))
            flops = step_flops(cfg, T)
            alloc, reserved = gpu.peak()
            entry.update(tokens_per_s=T / sec, seconds_per_step=sec, flops_per_step=flops,
                         mfu=flops / sec / peak_flops, peak_flops=peak_flops,
                         mfu_basis="bf16 dense peak (--peak-tflops), for f32 too",
                         peak_allocated_bytes=alloc, peak_reserved_bytes=reserved)
            log(f"train {dtype_name} T={T}: {entry['tokens_per_s']:.1f} tok/s, {sec:.3f} s/step, "
                f"MFU {entry['mfu']:.3f}")
        except Exception as e:  # noqa: BLE001
            opt.zero_grad(set_to_none=True)
            entry["error"] = err(e)
            log(f"train {dtype_name} T={T}: {entry['error']}")
        ids = None
        gpu.free()
        results.append(entry)
    del opt, params
    gpu.free()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vision-blocks", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="tiny widths and bench sizes (CPU smoke test)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=790.0, help="peak FLOP/s for MFU, in TFLOP/s")
    ap.add_argument("--config-only", action="store_true", help="write DIR/model/config.json and exit")
    args = ap.parse_args()
    stdout, sys.stdout = sys.stdout, sys.stderr  # stray prints must not reach stdout
    out, model_dir = args.out.resolve(), args.out.resolve() / "model"
    out.mkdir(parents=True, exist_ok=True)  # DIR/model appears only once the model is saved
    cfg = make_config(args)
    if args.config_only:
        setattr(cfg, DTYPE_KW, torch.float32)
        cfg.save_pretrained(str(model_dir))
        print(model_dir / "config.json", file=stdout)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_side.py: --device cuda but torch sees no CUDA device")
    dev = torch.device(args.device)
    gpu = Gpu(dev)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tc = text_config(cfg)
    report = {  # in the schema's order; filled in as the sections run
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "device_name": torch.cuda.get_device_name(dev) if gpu.cuda else "cpu", "cuda": torch.version.cuda,
        "model": None, "reference": None, "decode": [], "train": [], "flops_formula": FLOPS_FORMULA,
        "memory_after_load": None, "seconds": None,
    }
    json_path = out / "torch.json"

    def dump():
        report["seconds"] = time.perf_counter() - START
        json_path.write_text(json.dumps(report, indent=1) + "\n")

    try:
        model, make_s = make_model(cfg, dev, model_dir)
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(model_dir, ignore_errors=True)
        sys.exit(f"torch_side.py: making the model failed: {err(e)}")
    report["model"] = {
        "dir": str(model_dir), "layers": args.layers, "vision_blocks": args.vision_blocks,
        "params": sum(p.numel() for p in model.parameters()), "make_seconds": make_s,
        "config": {k: getattr(tc, k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads",
                                             "intermediate_size", "vocab_size")},
    }
    log(f"model: {report['model']['params']} params, made and saved in {make_s:.1f} s -> {model_dir}")
    try:
        ref_s = reference(model, cfg, dev, out / "reference.safetensors")
    except Exception as e:  # noqa: BLE001
        sys.exit(f"torch_side.py: reference logits failed: {err(e)}")
    report["reference"] = {"file": str(out / "reference.safetensors"), "prompt_tokens": 64, "seconds": ref_s}
    dump()

    small = args.small
    peak_flops = args.peak_tflops * 1e12
    if not args.skip_bench:
        try:  # f32 training on the model just made (TF32 off), before it is freed
            set_attn(model, "sdpa")
            report["train"] += bench_train(model, cfg, dev, gpu, "f32", [32] if small else [2048, 8192], peak_flops)
        except Exception as e:  # noqa: BLE001
            report["train"].append({"tokens": None, "dtype": "f32", "error": err(e)})
    del model
    gpu.free()
    dump()

    model = None
    try:  # the bf16 model as a loader would have it: from disk, sdpa
        model = load(model_dir, torch.bfloat16, dev)
        if gpu.cuda:
            free, total = torch.cuda.mem_get_info(dev)
            report["memory_after_load"] = {"allocated_bytes": torch.cuda.memory_allocated(dev),
                                           "reserved_bytes": torch.cuda.memory_reserved(dev),
                                           "free_bytes": free, "total_bytes": total}
        else:
            report["memory_after_load"] = dict.fromkeys(
                ("allocated_bytes", "reserved_bytes", "free_bytes", "total_bytes"))
        log(f"bf16 model loaded: {report['memory_after_load']}")
        if not args.skip_bench:
            rows, ctxs, n = ([2], [16], 4) if small else ([8, 32, 64], [1024, 4096], 32)
            report["decode"] = bench_decode(model, cfg, dev, gpu, rows, ctxs, n)
            dump()
            report["train"] += bench_train(model, cfg, dev, gpu, "bf16", [32] if small else [2048, 8192], peak_flops)
    except Exception as e:  # noqa: BLE001
        report["bf16_error"] = err(e)
        log(f"bf16 section: {report['bf16_error']}")
    model = None
    gpu.free()
    dump()
    print(json_path, file=stdout)


if __name__ == "__main__":
    main()
