"""Worker of tests/test_distributed.py: one process of a multi-process fit.

Run under ``torchrun``: fits the estimator described by the JSON file ``argv[2]`` on the
data in ``argv[1]`` (an ``.npz`` with X and y) and writes this rank's predictions, adapter
weights and history to ``argv[3]/rank<N>.npz``.
"""

import json
import os
import sys

import numpy as np
import torch.distributed as dist

from llmregressor import LLMRegressor


def main(data_path: str, params_path: str, out_dir: str) -> None:
    data = np.load(data_path)
    with open(params_path, encoding="utf-8") as file:
        params = json.load(file)
    reg = LLMRegressor(**params).fit(data["X"], data["y"])
    weights = reg.policy_.trainable_weights()
    np.savez(
        os.path.join(out_dir, f"rank{dist.get_rank()}.npz"),
        predictions=reg.predict(data["X"]),
        world_size=dist.get_world_size(),
        device=str(reg.policy_.policy.backbone.device),
        history=json.dumps(reg.history_),
        **{f"w/{k}": v for k, v in weights.items()},
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
