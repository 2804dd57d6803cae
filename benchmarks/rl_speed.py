"""Rollout throughput and ReMax step time: this engine vs a straightforward one.

    python benchmarks/rl_speed.py [--prompts 16] [--samples 4] [--repeats 2]

Both run on the embedded default model with the same LoRA adapters and prompts (diabetes
rows), normalized codec with 3 digits, one ReMax step = S samples + 1 greedy per prompt,
then a policy-gradient pass over the S samples.

- *this engine*: each prompt encoded once, KV cache expanded to its samples, logits only for
  the allowed number tokens, gradient pass with one prompt encoding per row;
- *straightforward*: ``generate()`` with a logits processor that masks disallowed tokens
  (full-vocabulary logits), and log-probs from a full-vocabulary log-softmax over each
  prompt+sample sequence re-encoded from scratch.
"""

import argparse

import numpy as np
import torch
from peft import LoraConfig
from sklearn.datasets import load_diabetes
from transformers import LogitsProcessor, LogitsProcessorList

from _report import clock, command_line, markdown_table, write_section
from llmregressor.backbones import (
    LanguageModelBackbone,
    compute_autocast,
    load_pretrained,
    resolve_compute_dtype,
)
from llmregressor.codecs import NormalizedCodec
from llmregressor.decoding import NumberPolicy
from llmregressor.serialize import RowSerializer


class GrammarMask(LogitsProcessor):
    """Allow only the codec's symbols at each generated position (full-vocabulary logits)."""

    def __init__(self, prompt_length, allowed_ids):
        self.prompt_length = prompt_length
        self.allowed_ids = allowed_ids

    def __call__(self, input_ids, scores):
        position = input_ids.shape[1] - self.prompt_length
        mask = torch.full_like(scores, -torch.inf)
        mask[:, self.allowed_ids[position]] = 0
        return scores + mask


def naive_step(backbone, codec, prompts, samples, ids_allowed):
    model = backbone.model
    tok = backbone.tokenizer
    batch = backbone.collate(backbone.tokenize(prompts))
    width = batch["input_ids"].shape[1]
    processor = LogitsProcessorList([GrammarMask(width, ids_allowed)])
    start = clock(backbone.device)
    with torch.no_grad(), compute_autocast(backbone.device, backbone.compute_dtype):
        common = dict(
            attention_mask=batch["attention_mask"],
            max_new_tokens=codec.length,
            min_new_tokens=codec.length,
            logits_processor=processor,
            pad_token_id=tok.pad_token_id,
        )
        sampled = model.generate(
            input_ids=batch["input_ids"],
            do_sample=True,
            top_k=0,
            top_p=1.0,
            num_return_sequences=samples,
            **common,
        )
        model.generate(input_ids=batch["input_ids"], do_sample=False, **common)
    rollout_s = clock(backbone.device) - start
    # Log-probs: every prompt+sample re-encoded, full-vocabulary log-softmax.
    attention = batch["attention_mask"].repeat_interleave(samples, 0)
    attention = torch.cat([attention, attention.new_ones((len(sampled), codec.length))], 1)
    with compute_autocast(backbone.device, backbone.compute_dtype):
        logits = model(input_ids=sampled, attention_mask=attention).logits
    log_probs = torch.log_softmax(logits[:, width - 1 : -1].float(), -1)
    chosen = log_probs.gather(-1, sampled[:, width:, None])[..., 0]
    (-chosen.sum()).backward()
    return rollout_s, clock(backbone.device) - start


def engine_step(policy, codec, prompts, samples):
    backbone = policy.backbone
    batch = backbone.collate(backbone.tokenize(prompts))
    start = clock(backbone.device)
    uniforms = torch.rand(len(prompts), samples, codec.length, device=backbone.device)
    rollout = policy.decode(batch, uniforms.double(), 1)
    rollout_s = clock(backbone.device) - start
    scores = policy.score(batch, rollout.tokens[:, 1:])
    (-scores.log_probs.sum()).backward()
    return rollout_s, clock(backbone.device) - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    prompts = RowSerializer(list(X.columns))(X.to_numpy()[: args.prompts])
    codec = NormalizedCodec(10, 3).fit(y.to_numpy())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_compute_dtype("auto", device)
    torch.manual_seed(0)
    lm, tokenizer = load_pretrained("smollm2-135m")
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
    backbone = LanguageModelBackbone(lm, tokenizer, codec.symbols, lora, device, dtype)
    policy = NumberPolicy(backbone, codec.allowed_mask())
    ids = backbone.symbol_ids.cpu()
    ids_allowed = [ids[row].tolist() for row in codec.allowed_mask()]

    results = {}
    for name, step in [
        (
            "straightforward",
            lambda: naive_step(backbone, codec, prompts, args.samples, ids_allowed),
        ),
        ("this engine", lambda: engine_step(policy, codec, prompts, args.samples)),
    ]:
        step()  # warm-up
        times = np.array([step() for _ in range(args.repeats)])
        results[name] = times.mean(axis=0)
        print(name, results[name], flush=True)
    numbers = args.prompts * (args.samples + 1)
    rows = []
    for name, (rollout_s, step_s) in results.items():
        rows.append([name, numbers / rollout_s, rollout_s, step_s])
    base = results["straightforward"]
    ours = results["this engine"]
    body = (
        f"{args.prompts} diabetes prompts x ({args.samples} samples + 1 greedy), "
        f"3-digit normalized codec, LoRA r=8, compute dtype {dtype}, "
        f"mean of {args.repeats} runs after a warm-up.\n\n"
        + markdown_table(["implementation", "numbers/s", "rollout s", "ReMax step s"], rows)
        + f"\n\nSpeed-up: rollouts {base[0] / ours[0]:.1f}x, full ReMax step "
        f"{base[1] / ours[1]:.1f}x."
    )
    print(body)
    # A GPU run gets a section of its own instead of replacing the CPU numbers.
    section = "RL rollout and step speed" + (" (GPU)" if device.type == "cuda" else "")
    write_section(section, command_line(), body)


if __name__ == "__main__":
    main()
