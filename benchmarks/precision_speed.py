"""SFT step and decode time of the default model in float32 vs bfloat16 autocast.

    python benchmarks/precision_speed.py [--repeats 3]

One SFT step = teacher-forced log-probs of 16 diabetes prompts + backward + AdamW step
(LoRA r=8, all linear layers); one decode = 16 prompts x 8 samples of a 3-digit number.
Also reports how far bf16 moves the number-token log-probs from fp32 on the same weights.
"""

import argparse
import time

import numpy as np
import torch
from peft import LoraConfig
from sklearn.datasets import load_diabetes

from _report import command_line, markdown_table, write_section
from llmregressor.backbones import LanguageModelBackbone, load_pretrained
from llmregressor.codecs import NormalizedCodec
from llmregressor.decoding import NumberPolicy
from llmregressor.serialize import RowSerializer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    prompts = RowSerializer(list(X.columns))(X.to_numpy()[:16])
    codec = NormalizedCodec().fit(y.to_numpy())
    targets = torch.as_tensor(codec.encode(y.to_numpy()[:16]))[:, None]
    rows, log_probs = [], {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        lm, tokenizer = load_pretrained("smollm2-135m")
        lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
        backbone = LanguageModelBackbone(
            lm, tokenizer, codec.symbols, lora, torch.device("cpu"), dtype
        )
        policy = NumberPolicy(backbone, codec.allowed_mask())
        batch = backbone.collate(backbone.tokenize(prompts))
        with torch.no_grad():
            log_probs[dtype] = policy.score(batch, targets).log_probs
        optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=1e-4)
        step_times, decode_times = [], []
        for _ in range(args.repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            loss = -policy.score(batch, targets).log_probs.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            policy.decode(batch, torch.rand(16, 8, 3).double())
            decode_times.append(time.perf_counter() - start)
        rows.append([str(dtype), np.mean(step_times[1:]), np.mean(decode_times[1:])])
        print(rows[-1], flush=True)
    gap = (log_probs[torch.float32] - log_probs[torch.bfloat16]).abs()
    body = (
        markdown_table(["compute dtype", "SFT step s (16 rows)", "decode s (16 x 8)"], rows)
        + f"\n\nNumber-token log-probs, bf16 vs fp32 on the same weights: mean absolute "
        f"difference {gap.mean():.4f}, max {gap.max():.4f} (nats)."
    )
    write_section("Compute precision on CPU", command_line(), body)


if __name__ == "__main__":
    main()
