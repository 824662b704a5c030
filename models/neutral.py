"""Work that is provably neutral, decided from the parameters: identical streams, zero biases, identity rotations.

With weights as the loader produces them (both streams' mid-layer blocks copied from one source, every
lambda 0, temporal frequencies / slopes 0) part of the forward pass computes exactly nothing:

- ``streams_identical``: every mid layer's pose and geometry blocks (and sparse blocks) hold equal
  tensors and equal LayerNorm eps, the stream biases are equal (-lambda_pose == lambda_geo, the same
  for the Time-SA pair) and lambda_kpt is 0 (the geometry stream's keypoint bias vanishes). Then one
  stream is run and both heads read its tokens: bitwise the same numbers as running both.
- ``zero_lambdas``: mask-bias lambdas whose clamped value is exactly 0; a bias made only of those adds
  no channel (a zero channel changes nothing: see ``tests/test_neutral_skips.py``).
- ``identity_temporal``: layers whose temporal RoPE frequencies (or ALiBi slopes) are all 0: the rotation
  is the identity (cos 1, sin 0) / the bias is 0, so it is not applied.
- ``zero_lambda_kpt``: the Sparse Global-SA keypoint bias is 0.

Nothing is skipped for a parameter that autograd needs (grad mode on and ``requires_grad``): at 0 its
gradient is generally not 0, so training always computes the full graph.

The decision is cached keyed on the parameters' identities, in-place versions, storages, dtypes and the
blocks' eps: comparing tensors costs one pass over the mid-layer weights after loading and again only
after a parameter changes (optimizer step, ``load_state_dict``, ``.to()``, ``fill_``), never per forward.

To see what the skips save or check that they change no number: ``skips_disabled(model)`` runs the full
computation, and ``single_stream_state`` gives a single-stream model the tensors the dual model runs when
its streams are identical (``benchmarks/bench_neutral.py``, ``tests/test_neutral_skips.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import torch
from torch import nn

from models.token_layout import AttentionKind, Stream

LAMBDA_PAIRS = {"view": ("lambda_pose", "lambda_geo"), "time": ("lambda_pose_t", "lambda_geo_t")}


@dataclass(frozen=True)
class NeutralPlan:
    """What one forward pass may skip (see the module docstring)."""

    streams_identical: bool = False
    zero_lambdas: frozenset = frozenset()
    identity_temporal: frozenset = frozenset()
    zero_lambda_kpt: bool = False

    def mask_bias_is_zero(self, stream: Stream, attention: AttentionKind) -> bool:
        """True when the mask bias of ``stream`` ("pose", "geo", "shared") in ``attention`` is exactly 0."""
        pose, geo = LAMBDA_PAIRS[attention]
        needed = {"pose": (pose,), "geo": (geo,), "shared": (pose, geo)}[stream]
        return all(name in self.zero_lambdas for name in needed)

    def describe(self, dual: bool, temporal_layers: int, sparse: bool) -> dict:
        """The decisions in words, for run.json's network section."""
        return {
            "streams identical": ("yes" if self.streams_identical else "no") if dual else "single stream",
            "zero mask biases skipped": sorted(self.zero_lambdas),
            "identity temporal encodings skipped": f"{len(self.identity_temporal)} of {temporal_layers} layers",
            "zero keypoint bias skipped": self.zero_lambda_kpt if sparse else "no sparse global attention",
        }


class NeutralityCache:
    """Recomputes a ``NeutralPlan`` only when the parameters it depends on change.

    ``plan(parameters, extra, decide)``: ``parameters`` are the tensors the plan reads, ``extra`` hashable
    non-tensor state (LayerNorm eps), ``decide(grad_needed)`` computes the plan, ``grad_needed(p)``
    saying whether autograd needs ``p`` in this forward. The cache holds no reference to its owner, so a
    deep copy of the model starts a fresh decision (the copied parameters have new identities).
    """

    def __init__(self) -> None:
        self._key: Optional[tuple] = None
        self._plan = NeutralPlan()
        self.recomputed = 0  # how often the tensors were compared (tests read it)
        self.enabled = True  # False: every plan is "skip nothing" (``skips_disabled``)

    def plan(self, parameters: list[torch.Tensor], extra: tuple,
             decide: Callable[[Callable[[torch.Tensor], bool]], NeutralPlan]) -> NeutralPlan:
        if not self.enabled:
            return NeutralPlan()
        grad_mode = torch.is_grad_enabled()
        prints = tuple(_fingerprint(p) for p in parameters)
        key = (grad_mode, extra, prints)
        if key != self._key or None in prints:
            self._plan = decide(lambda p: grad_mode and p.requires_grad)
            self._key = key
            self.recomputed += 1
        return self._plan


def _fingerprint(p: torch.Tensor) -> Optional[tuple]:
    """Identity, in-place version, storage, dtype, device and grad flag; None when untrackable."""
    try:
        version = p._version
    except RuntimeError:  # inference tensors have no version counter: compare every time
        return None
    return (id(p), version, p.data_ptr(), p.dtype, str(p.device), p.requires_grad)


def all_equal(a: nn.Module, b: nn.Module) -> bool:
    """Same parameter names and bitwise-equal values (dtype and device included)."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    if pa.keys() != pb.keys():
        return False
    return all(pa[n].dtype == pb[n].dtype and pa[n].device == pb[n].device and torch.equal(pa[n], pb[n])
               for n in pa)


def is_zero(value: torch.Tensor) -> bool:
    """All elements exactly 0 (one host synchronisation; called only when the plan is recomputed)."""
    return not bool(value.detach().ne(0).any())


# ----------------------------------------------------------------------------- the aggregator's plan
def stream_pairs(agg) -> list[tuple[nn.Module, nn.Module]]:
    """(pose module, geometry module) of every per-stream block of the aggregator (dual stream only)."""
    if not agg.dual:
        return []
    pairs = [(agg.blocks_of(kind, k, "pose"), agg.blocks_of(kind, k, "geo"))
             for k in agg.mid for kind in ("time", "view")]
    for k in agg.sparse_layers:
        if k >= agg.mid[0]:
            pairs.append((agg.sparse_blocks_of(k, "pose"), agg.sparse_blocks_of(k, "geo")))
    return pairs


def plan_inputs(agg) -> tuple[list[torch.Tensor], tuple]:
    """The tensors and the eps values the aggregator's plan depends on (the cache key)."""
    params = list(agg.mask_bias.parameters()) + list(agg.temporal_pos.parameters())
    if agg.lambda_kpt is not None:
        params.append(agg.lambda_kpt)
    eps = []
    for pose, geo in stream_pairs(agg):
        params += list(pose.parameters()) + list(geo.parameters())
        eps.append((_eps(pose), _eps(geo)))
    return params, (agg.mask_bias.clamp_value, tuple(eps))


def decide_plan(agg, grad_needed: Callable[[torch.Tensor], bool]) -> NeutralPlan:
    """Compare the aggregator's tensors once: see the module docstring for each decision."""
    bias = agg.mask_bias
    zero = frozenset(name for name in bias.NAMES
                     if not grad_needed(getattr(bias, name)) and is_zero(bias.value(name)))
    identity = frozenset(k for k in agg.temporal_pos.layers()
                         if not any(grad_needed(p) for p in agg.temporal_pos[k].parameters())
                         and agg.temporal_pos[k].is_identity())
    kpt = agg.lambda_kpt
    zero_kpt = kpt is not None and not grad_needed(kpt) and is_zero(kpt)
    identical = False
    pairs = stream_pairs(agg)
    if pairs:
        own = [getattr(bias, name) for name in bias.NAMES] + ([kpt] if kpt is not None else [])
        own += [p for pose, geo in pairs for p in (*pose.parameters(), *geo.parameters())]
        identical = (not any(grad_needed(p) for p in own)
                     and (kpt is None or zero_kpt)
                     and all(torch.equal(-bias.value(pose), bias.value(geo)) for pose, geo in LAMBDA_PAIRS.values())
                     and all(_eps(pose) == _eps(geo) and all_equal(pose, geo) for pose, geo in pairs))
    return NeutralPlan(identical, zero, identity, zero_kpt)


@contextlib.contextmanager
def skips_disabled(model: nn.Module) -> Iterator[None]:
    """Inside the block, ``model`` (a ``VGGT`` or its ``Aggregator``) skips nothing: every forward computes
    the full graph, as before the skips existed (the cached decision is kept for afterwards)."""
    cache = getattr(model, "aggregator", model)._neutral
    previous, cache.enabled = cache.enabled, False
    try:
        yield
    finally:
        cache.enabled = previous


def single_stream_state(dual: nn.Module, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """The tensors of ``dual`` (a dual-stream ``VGGT``) for a model with state-dict ``keys`` built from the
    same config with ``enable_dual_stream=False``: its mid layers' blocks take the pose stream's tensors
    (the stream that runs when the streams are identical), every other key its own. The tensors are
    shared, not copied."""
    wanted = set(keys)
    state = {k: v for k, v in dual.state_dict().items() if k in wanted}
    agg = dual.aggregator
    for k in agg.mid if agg.dual else ():
        for kind in ("time", "view"):
            for name, value in agg.blocks_of(kind, k, "pose").state_dict().items():
                key = f"aggregator.{kind}_blocks.{k}.{name}"
                if key in wanted:
                    state[key] = value
    return state


def _eps(module: nn.Module) -> tuple:
    """LayerNorm eps of a block or of a sparse block's block (they are not parameters)."""
    block = getattr(module, "block", module)
    return block.eps
