"""What trains: parameter selection by name (``--train new|page4d|all``, ``--train-pattern GLOB``) and the
optimizer groups (learning rate x weight decay).

Selections (names are our state-dict names, e.g. ``aggregator.pose_time_blocks.9.attn.qkv.weight``):

- ``new``: everything PAGE-4D's network lacks and that starts neutral: the four mask lambdas, the mask
  fusion (alpha, beta or the gate MLP), the temporal encodings (RoPE frequencies / ALiBi slopes), the
  Sparse Global-SA blocks with their gates and memory tokens, lambda_kpt.
- ``page4d``: PAGE-4D's recipe mapped onto our layers: ``new`` + the spatial mask head + the camera and
  register tokens + every block (Time-SA, View-SA, both streams, shared) of the layers PAGE-4D unfreezes.
  PAGE-4D trains 1-based layers 11-20 of 24; at depth D we train layer k when 10/24 < k/D <= 20/24
  (full: 11-20; small, D=8: 4-6; tiny, D=4: 2-3). Encoder, the other layers and the heads stay frozen.
- ``all``: every parameter.
``--train-pattern GLOB`` (repeatable, fnmatch on the name) adds parameters to any of these.

Optimizer groups: the ``new`` tensors (except whole transformer blocks inside sparse blocks) use the
larger ``lr_new`` (default 1e-3), everything else ``lr`` (1e-5, the blocks). Weight decay applies to
matrices only: never to norms, biases, LayerScale, lambdas, gates, frequencies (every tensor with <= 1
dimension) nor to the new scalars.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from torch import nn

from page4d_cli.train.config import TRAIN_CHOICES

# Name patterns (regular expressions on the full parameter name) of the "new" selection.
NEW_PATTERNS = (
    r"aggregator\.mask_bias\..*",
    r"aggregator\.mask_fusion\..*",
    r"aggregator\.temporal_pos\..*",
    r"aggregator\.(pose_|geo_|shared_)?sparse_blocks\..*",
    r"aggregator\.lambda_kpt",
)
# Inside sparse blocks, the transformer block copied from View-SA trains at the block learning rate.
SPARSE_BLOCK_WEIGHTS = r"aggregator\.\w*sparse_blocks\.\d+\.block\..*"
PAGE4D_EXTRA = (r"aggregator\.spatial_mask_head\..*", r"aggregator\.camera_token", r"aggregator\.register_token")
BLOCK_NAME = re.compile(r"aggregator\.(?:pose_|geo_)?(?:time|view)_blocks\.(\d+)\.")


def page4d_layers(depth: int) -> list[int]:
    """1-based layers PAGE-4D's recipe unfreezes, mapped to ``depth`` layers (11-20 of 24)."""
    return [k for k in range(1, depth + 1) if 10 * depth < 24 * k <= 20 * depth]


def _match(name: str, patterns) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def is_new(name: str) -> bool:
    return _match(name, NEW_PATTERNS)


def select_trainable(model: nn.Module, train: str = "new", patterns: tuple[str, ...] = ()) -> list[str]:
    """Names of the parameters that train (in ``named_parameters`` order)."""
    if train not in TRAIN_CHOICES:
        raise ValueError(f"--train must be one of {', '.join(TRAIN_CHOICES)}; got {train!r}")
    depth = model.config.depth
    layers0 = {k - 1 for k in page4d_layers(depth)}  # container indices are 0-based
    chosen = []
    for name, _ in model.named_parameters():
        keep = train == "all" or is_new(name)
        if train == "page4d" and not keep:
            block = BLOCK_NAME.match(name)
            keep = _match(name, PAGE4D_EXTRA) or (block is not None and int(block.group(1)) in layers0)
        if not keep and patterns:
            keep = any(fnmatch.fnmatchcase(name, p) for p in patterns)
        if keep:
            chosen.append(name)
    return chosen


def apply_selection(model: nn.Module, trainable: list[str]) -> None:
    """requires_grad True exactly on ``trainable`` (frozen tensors then get no grad and no optimizer state)."""
    wanted = set(trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(name in wanted)


def decays(name: str, param: nn.Parameter) -> bool:
    """Weight decay on matrices / conv kernels / tokens only; never norms, biases, lambdas, gates."""
    return param.ndim > 1 and not (is_new(name) and not re.fullmatch(SPARSE_BLOCK_WEIGHTS, name))


def lr_kind(name: str) -> str:
    """"new" (the larger learning rate) or "blocks"."""
    return "new" if is_new(name) and not re.fullmatch(SPARSE_BLOCK_WEIGHTS, name) else "blocks"


@dataclass
class ParamGroup:
    name: str  # "blocks", "blocks_no_decay", "new", "new_no_decay"
    lr_kind: str
    weight_decay: float
    names: list[str] = field(default_factory=list)
    params: list[nn.Parameter] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.params)


def build_groups(model: nn.Module, weight_decay: float) -> list[ParamGroup]:
    """The non-empty optimizer groups of the parameters with requires_grad, in a fixed order."""
    groups = {key: ParamGroup(key, key.split("_")[0], weight_decay if not key.endswith("no_decay") else 0.0)
              for key in ("blocks", "blocks_no_decay", "new", "new_no_decay")}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = lr_kind(name) + ("" if decays(name, param) else "_no_decay")
        groups[key].names.append(name)
        groups[key].params.append(param)
    return [g for g in groups.values() if g.params]


def selection_table(model: nn.Module, groups: list[ParamGroup]) -> list[dict]:
    """Rows {group, tensors, parameters, bytes} for each optimizer group and the frozen rest."""
    rows = [{"group": g.name, "tensors": len(g.params), "parameters": g.numel, "bytes": g.nbytes} for g in groups]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    rows.append({"group": "frozen", "tensors": len(frozen), "parameters": sum(p.numel() for p in frozen),
                 "bytes": sum(p.numel() * p.element_size() for p in frozen)})
    return rows
