#!/usr/bin/env python3
"""The PyTorch side of `cargo bench -p policy --bench vs_pytorch`: the same tiny model
(policy/tests/fixtures/tiny) in transformers on CPU, timed on the same work as the Rust side.

Prints one JSON line: decode tokens/s (transformers' eager greedy `generate` with its KV cache)
and training tokens/s (forward + backward + AdamW on a batch). Arguments: THREADS PROMPT_LEN
NEW_TOKENS BATCH SEQ STEPS.
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures  # noqa: E402  (venv handling)


def main():
    make_fixtures.ensure_venv()
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    threads, prompt_len, new_tokens, batch, seq, steps = map(int, sys.argv[1:7])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    path = make_fixtures.FIXTURES / "tiny"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()

    prompt = torch.tensor([[(7 * i + 3) % 1000 for i in range(prompt_len)]])
    def decode():
        with torch.no_grad():
            start = time.perf_counter()
            out = model.generate(
                prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                use_cache=True,
            )
            elapsed = time.perf_counter() - start
        assert out.shape[1] == prompt_len + new_tokens, out.shape
        return new_tokens / elapsed
    decode()  # warm-up
    decode_rates = sorted(decode() for _ in range(3))

    model.train()
    ids = torch.tensor([[(11 * i + 5 * b) % 1000 for i in range(seq)] for b in range(batch)])
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def train_step():
        start = time.perf_counter()
        logits = model(input_ids=ids[:, :-1]).logits
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        loss = -logp.mean()
        loss.backward()
        optim.step()
        optim.zero_grad()
        return batch * (seq - 1) / (time.perf_counter() - start)
    train_step()  # warm-up
    train_rates = sorted(train_step() for _ in range(steps))
    print(json.dumps({
        "decode_tok_s": decode_rates[len(decode_rates) // 2],
        "train_tok_s": train_rates[len(train_rates) // 2],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
