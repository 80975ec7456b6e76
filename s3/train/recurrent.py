"""The training forward over a clip: memorise frame 0 with its ground truth, then segment every
later frame from memory and memorise the prediction, back-propagating through time.

Per clip of T frames (batch B, N object slots, ``selector`` marking the real ones):

1. All B*T frames are encoded at once; memory keys, shrinkage and selection per frame.
2. Frame 0 is memorised with its ground-truth masks (deep sensory update on).
3. For t = 1..T-1: the pixel memory is every earlier frame while there are at most
   ``num_ref_frames`` of them, else ``num_ref_frames`` earlier frames drawn without replacement per
   clip; the object memory is every earlier frame's summaries. Read memory (full softmax), fuse with
   the sensory state and the previous prediction, run the query transformer (aux logits on), compute
   the aux predictions, decode (updating the sensory state). Unless t is the last frame, memorise
   frame t with the *predicted* soft masks, with a deep sensory update with probability
   ``deep_update_prob`` (one draw per time step for the whole batch).

The memory-frame draws and the deep-update coin flips come from a caller-owned ``torch.Generator``
(saved in checkpoints, so that a resumed run draws what an uninterrupted one would). Nothing is
detached: the loss back-propagates through the whole clip.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s3.model.network import ImageFeatures, S3Network


class ClipPrediction(NamedTuple):
    """Outputs for frames 1..T-1 (F = T-1), background channel first. The auxiliary logits are
    None for models without those heads (STMA)."""

    logits: Tensor  # (B, F, N+1, H, W) soft-aggregated class logits
    probs: Tensor  # (B, F, N+1, H, W) their softmax
    sensory_logits: Optional[Tensor] = None  # (B, F, N+1, h, w) sensory aux logits, h = H/16
    query_logits: Optional[Tensor] = None  # (B, F, N+1, L, h, w) query-transformer aux logits, L = num_blocks + 1


def draw_past_frames(num_past: int, count: int, batch: int, generator: torch.Generator) -> Tensor:
    """Indices (B, M) of earlier frames for a frame with ``num_past`` predecessors: all of them
    (M = num_past) while there are at most ``count``, else ``count`` drawn without replacement per clip."""
    if num_past <= count:
        return torch.arange(num_past).expand(batch, -1)
    return torch.stack([torch.randperm(num_past, generator=generator)[:count] for _ in range(batch)])


def first_frame_masks(labels: Tensor, selector: Tensor) -> Tensor:
    """labels (B, H, W) int64 in 0..N; selector (B, N) 0/1 -> binary object masks (B, N, H, W)."""
    n = selector.shape[1]
    masks = F.one_hot(labels, n + 1)[..., 1:].permute(0, 3, 1, 2).float()
    return masks * selector.view(*selector.shape, 1, 1)


class RecurrentClipModel(nn.Module):
    """Wraps :class:`S3Network` so that one ``forward`` runs a whole training clip (what DDP wraps)."""

    def __init__(self, network: S3Network, num_ref_frames: int, deep_update_prob: float) -> None:
        super().__init__()
        if num_ref_frames < 1 or not 0.0 <= deep_update_prob <= 1.0:
            raise ValueError(
                f"RecurrentClipModel: num_ref_frames={num_ref_frames} must be >= 1 and "
                f"deep_update_prob={deep_update_prob} in [0, 1]"
            )
        self.network = network
        self.num_ref_frames = num_ref_frames
        self.deep_update_prob = deep_update_prob

    def memory_frames(self, num_past: int, batch: int, generator: torch.Generator) -> Tensor:
        """Indices (B, M) of the earlier frames that form the pixel memory for a frame with
        ``num_past`` predecessors: all of them, or ``num_ref_frames`` drawn per clip."""
        return draw_past_frames(num_past, self.num_ref_frames, batch, generator)

    def forward(
        self, frames: Tensor, first_labels: Tensor, selector: Tensor, generator: torch.Generator
    ) -> ClipPrediction:
        """frames (B, T, 3, H, W) in [0, 1], H and W multiples of ``model.pad_multiple``;
        first_labels (B, H, W) int64 ground truth of frame 0 in 0..N; selector (B, N) 0/1 real objects;
        generator: CPU generator for the memory draws and deep-update coins -> :class:`ClipPrediction`.
        """
        b, t = frames.shape[:2]
        if t < 2:
            raise ValueError(f"RecurrentClipModel: a training clip needs >= 2 frames, got {t}")
        net = self.network
        batch_index = torch.arange(b, device=frames.device).unsqueeze(1)

        encoded = net.encode_image(frames.flatten(0, 1))
        key, shrinkage, selection = net.transform_key(encoded.f16)

        def per_frame(x: Tensor) -> Tensor:  # (B*T, ...) -> (B, T, ...)
            return x.unflatten(0, (b, t))

        f16, f8, f4, pix_feat = (per_frame(x) for x in (encoded.f16, encoded.f8, encoded.f4, encoded.pix_feat))
        key, shrinkage, selection = per_frame(key), per_frame(shrinkage), per_frame(selection)

        def features_at(i: int) -> ImageFeatures:
            return ImageFeatures(f16=f16[:, i], f8=f8[:, i], f4=f4[:, i], pix_feat=pix_feat[:, i])

        masks = first_frame_masks(first_labels, selector)
        sensory = net.zero_sensory(features_at(0), selector.shape[1])
        value, sensory, summaries = net.encode_mask(frames[:, 0], pix_feat[:, 0], sensory, masks, deep_update=True)
        values, object_memory = [value], [summaries]
        outputs: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        for i in range(1, t):
            chosen = self.memory_frames(i, b, generator).to(frames.device)  # (B, M)
            memory_key = key[batch_index, chosen].transpose(1, 2).flatten(2)  # (B, CK, M*h*w)
            memory_shrinkage = shrinkage[batch_index, chosen].transpose(1, 2).flatten(2)  # (B, 1, M*h*w)
            memory_value = torch.stack(values, dim=1)[batch_index, chosen]  # (B, M, N, CV, h, w)
            memory_value = memory_value.permute(0, 2, 3, 1, 4, 5).flatten(3)  # (B, N, CV, M*h*w)

            features = features_at(i)
            readout, _ = net.read_pixel_memory(
                key[:, i], selection[:, i], memory_key, memory_shrinkage, memory_value
            )
            out = net.segment_frame(
                features, readout, sensory, masks, torch.stack(object_memory, dim=2), selector=selector, need_aux=True
            )
            assert out.aux is not None
            sensory = out.sensory
            outputs.append((out.logits, out.prob, out.aux["sensory_logits"], out.aux["query_logits"]))
            masks = out.prob[:, 1:]

            if i < t - 1:
                deep_update = bool(torch.rand((), generator=generator) < self.deep_update_prob)
                value, sensory, summaries = net.encode_mask(
                    frames[:, i], features.pix_feat, sensory, masks, deep_update=deep_update
                )
                values.append(value)
                object_memory.append(summaries)

        logits, probs, sensory_logits, query_logits = (torch.stack(x, dim=1) for x in zip(*outputs))
        return ClipPrediction(logits, probs, sensory_logits, query_logits)
