"""Run by tests/test_train.py under torchrun: one process of a 2-process CPU fit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))

from test_train import _ddp_config, _ddp_data, _model

from fernb.train import fit

if __name__ == "__main__":
    result = fit(_model(), *_ddp_data(), config=_ddp_config())
    torch.save(result.model.state_dict(), Path(sys.argv[1]) / f"rank{os.environ['RANK']}.pt")
    dist.destroy_process_group()
