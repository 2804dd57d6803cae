"""One RL step of this engine against TRL's ``GRPOTrainer``, at equal work, in one process.

    python benchmarks/trl_speed.py [--prompts 16] [--generations 4] [--steps 3] [--model NAME]
                                   [--lora-layers N] [--section NAME]

Both sides train LoRA adapters (r=8, alpha 16, every linear layer of every decoder layer,
or of the top ``--lora-layers`` layers as the estimator's ``lora_layers`` places them) on
the same base model (the estimator's default unless ``--model`` names another) with the
same diabetes prompts
(``RowSerializer`` rows), each step sampling ``--generations`` completions for each of
``--prompts`` prompts, scoring them against the row's target and taking one optimizer step
on a group-relative policy gradient:

- *TRL GRPOTrainer*: ``GRPOConfig(num_generations=G, per_device_train_batch_size=P * G,
  steps_per_generation=1, max_completion_length=8, beta=0, gradient_checkpointing=False,
  bf16=True, use_cpu=True)`` on the CPU; the model writes free text and a reward function
  parses the first number in it (text without a number gets the worst reward of its group).
  Its step time is measured by a ``TrainerCallback`` from ``on_step_begin`` to
  ``on_step_end``: generation, reward, loss, backward and optimizer step.
- *this engine*: ``NumberPolicy.decode`` draws the G numbers of each prompt from the codec's
  grammar (3-digit normalized, the estimator's default) sharing each prompt's KV cache, the
  package's squared reward and ``grpo_advantages`` credit them,
  ``NumberPolicy.score`` takes their log-probs with gradients, and one AdamW step follows,
  under the same compute precision (bfloat16 autocast on CPU). With ``--lora-layers`` its
  backbone computes the frozen layers below the adapters once per prompt, as a fit does
  (``frozen_layers``, ``caching_prompts``): the table then has two rows for it, the steps
  inside one caching block (the frozen layers' results of the warm-up step reused, as a
  fit's RL epochs reuse those of its SFT epochs) and the steps outside it (the frozen
  layers computed in every step, as for prompts seen for the first time).

The first step of each side is a warm-up; the table gives the mean of the others: seconds a
step, completions a second, and for TRL the share of completions that held a number. For
this engine one more step is counted by ``torch.utils.flop_counter`` and set against this
machine's bfloat16 matmul peak, measured in the same run (``step_profile.matmul_peak``):
the seconds the step would take if every FLOP ran at that peak, a bound on what any
implementation of the same arithmetic reaches here.
"""

import argparse
import contextlib
import re
import time

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig
from sklearn.datasets import load_diabetes
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from _report import command_line, markdown_table, write_section
from llmregressor.backbones import (
    LanguageModelBackbone,
    layer_target_modules,
    load_pretrained,
    resolve_compute_dtype,
)
from llmregressor.codecs import NormalizedCodec
from llmregressor.decoding import NumberPolicy
from llmregressor.rl import grpo_advantages, make_reward
from llmregressor.serialize import RowSerializer
from step_profile import matmul_peak

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def lora(model: torch.nn.Module, adapted: int | None) -> LoraConfig:
    """LoRA r=8 on every linear layer of the decoder, or of its top ``adapted`` layers."""
    if adapted is None:
        return LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    n_layers = model.config.num_hidden_layers
    return LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=layer_target_modules(model, "all-linear"),
        layers_to_transform=list(range(n_layers - adapted, n_layers)),
        task_type="CAUSAL_LM",
    )


class StepTimer(TrainerCallback):
    """Seconds of each optimizer step of a Trainer, generation included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


class NumberReward:
    """Negative squared error of the first number in each completion, counting the misses."""

    __name__ = "negative_squared_error"

    def __init__(self) -> None:
        self.completions = 0
        self.numbers = 0

    def __call__(self, prompts, completions, target, **kwargs) -> list[float]:
        values = []
        for text in completions:
            found = NUMBER.search(text)
            values.append(float(found.group()) if found else None)
        self.completions += len(values)
        self.numbers += sum(v is not None for v in values)
        errors = [
            None if v is None else -((v - t) ** 2) for v, t in zip(values, target, strict=True)
        ]
        worst = min([e for e in errors if e is not None], default=0.0)
        return [worst if e is None else e for e in errors]


def trl_steps(model_name: str, prompts: list[str], y: np.ndarray, args) -> tuple[list, float]:
    """Seconds of each TRL GRPO step and the share of completions holding a number."""
    model, tokenizer = load_pretrained(model_name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = Dataset.from_dict({"prompt": prompts, "target": [float(v) for v in y]})
    config = GRPOConfig(
        output_dir=args.output_dir,
        num_generations=args.generations,
        per_device_train_batch_size=args.prompts * args.generations,
        steps_per_generation=1,
        max_completion_length=8,
        beta=0.0,
        learning_rate=1e-4,
        gradient_checkpointing=False,
        bf16=True,
        use_cpu=True,
        max_steps=args.steps,
        logging_steps=args.steps,
        save_strategy="no",
        report_to="none",
        seed=0,
        shuffle_dataset=False,
    )
    timer, reward = StepTimer(), NumberReward()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=lora(model, args.lora_layers),
        callbacks=[timer],
    )
    trainer.train()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    print("TRL trainable parameters", trainable, flush=True)
    return timer.seconds, reward.numbers / max(reward.completions, 1)


def engine_steps(
    model_name: str, prompts: list[str], y: np.ndarray, args, cache_prompts: bool
) -> tuple[list[float], float]:
    """Seconds of each GRPO step of this engine on the same prompts and work, and its FLOPs.

    With ``cache_prompts`` every step runs inside one ``caching_prompts`` block, so the
    frozen layers' results of the warm-up step serve the later ones.
    """
    codec = NormalizedCodec(10, 3).fit(y)
    device = torch.device("cpu")
    model, tokenizer = load_pretrained(model_name)
    n_layers = model.config.num_hidden_layers
    backbone = LanguageModelBackbone(
        model,
        tokenizer,
        codec.symbols,
        lora(model, args.lora_layers),
        device,
        resolve_compute_dtype("auto", device),
        frozen_layers=0 if args.lora_layers is None else n_layers - args.lora_layers,
    )
    trainable = sum(p.numel() for p in backbone.trainable_parameters())
    print("this engine's trainable parameters", trainable, flush=True)
    with backbone.caching_prompts() if cache_prompts else contextlib.nullcontext():
        return _timed_steps(backbone, codec, prompts, y, args)


def _timed_steps(
    backbone, codec, prompts: list[str], y: np.ndarray, args
) -> tuple[list[float], float]:
    """Seconds of each of ``args.steps`` GRPO steps, then the FLOPs of one more."""
    policy = NumberPolicy(backbone, codec.allowed_mask())
    optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=1e-4)
    batch = backbone.pad_prompts(backbone.tokenize(prompts))
    reward_fn = make_reward("squared", codec)

    def step() -> None:
        """Decode, reward, credit, score with gradients, take the optimizer step."""
        uniforms = torch.rand(len(prompts), args.generations, codec.length, dtype=torch.float64)
        with torch.no_grad():
            rollout = policy.decode(batch, uniforms)
        values = codec.decode(rollout.tokens.numpy())
        advantages = torch.as_tensor(grpo_advantages(reward_fn(values, y[:, None])))
        scores = policy.score(batch, rollout.tokens)
        loss = -(advantages.float() * scores.log_probs.sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    with FlopCounterMode(display=False) as counter:
        step()
    return seconds, counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="steps per side, the first a warm-up")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--lora-layers", type=int, default=None, help="adapt the top N decoder layers only"
    )
    parser.add_argument("--section", default="RL step against TRL GRPOTrainer")
    parser.add_argument("--output-dir", default="/tmp/trl_speed")
    args = parser.parse_args()
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    prompts = RowSerializer(list(X.columns))(X.to_numpy()[: args.prompts])
    y = y.to_numpy()[: args.prompts].astype(np.float64)
    ours = {}
    for cache_prompts in [False] if args.lora_layers is None else [True, False]:
        torch.manual_seed(0)
        ours[cache_prompts] = engine_steps(args.model, prompts, y, args, cache_prompts)
        print("this engine", "cached" if cache_prompts else "", ours[cache_prompts], flush=True)
    theirs, numeric_share = trl_steps(args.model, prompts, y, args)
    print("TRL", theirs, numeric_share, flush=True)
    peak = matmul_peak(torch.bfloat16)
    completions = args.prompts * args.generations
    theirs_s = float(np.mean(theirs[1:]))
    rows = [
        [
            "TRL GRPOTrainer",
            round(theirs_s, 2),
            round(completions / theirs_s, 2),
            "",
            f"{numeric_share:.0%}",
            "",
            "",
            "",
        ]
    ]
    for cache_prompts, (seconds, flops) in ours.items():
        name = "this engine (GRPO step)"
        if args.lora_layers is not None:
            name += ", frozen layers " + ("cached" if cache_prompts else "computed each step")
        ours_s = float(np.mean(seconds[1:]))
        at_peak = flops / peak
        rows.append(
            [
                name,
                round(ours_s, 2),
                round(completions / ours_s, 2),
                f"{theirs_s / ours_s:.1f}x",
                "100%",
                f"{flops / 1e9:.1f}",
                round(at_peak, 2),
                f"{theirs_s / at_peak:.1f}x",
            ]
        )
    adapters = (
        "every linear layer"
        if args.lora_layers is None
        else f"every linear layer of the top {args.lora_layers} decoder layers"
    )
    body = (
        f"{args.prompts} diabetes prompts x {args.generations} completions a step, model "
        f"{args.model}, LoRA r=8 on {adapters}, bfloat16 autocast on the CPU, mean of "
        f"{args.steps - 1} steps after a warm-up, all in this process. This run's bfloat16 "
        f'matmul peak (2048^3, best of 5): {peak / 1e9:.0f} GFLOP/s; "at the peak" is a '
        "step's counted FLOPs at that rate.\n\n"
        + markdown_table(
            [
                "implementation",
                "s / step",
                "completions / s",
                "throughput / TRL's",
                "numbers",
                "GFLOP / step",
                "s / step at the peak",
                "throughput / TRL's at the peak",
            ],
            rows,
        )
    )
    print(body)
    write_section(args.section, command_line(), body)


if __name__ == "__main__":
    main()
