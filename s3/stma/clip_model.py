"""The STMA training forward over a clip (paper 3.4), back-propagating through time.

Per clip of T frames (batch B, N object slots, ``selector`` marking the real ones):

1. The stem runs on all B*T frames at once (it mixes nothing across frames).
2. Frame 0 is associated with nothing (plain self-attention, as at inference) and memorised with
   its ground-truth masks: its key goes to the temporal memory with the mask-encoded values, its
   stem tokens and masks to the spatial memory.
3. For t = 1..T-1: the references are every earlier frame while there are at most
   ``num_references`` of them, else ``num_references`` earlier frames drawn without replacement per
   clip [P: "two of the past frames ... randomly selected"]; the temporal memory is every earlier
   frame [A]; the object tokens pool it (eq. 5). STML, key, full-softmax readout (no top-k in
   training [A, XMem]), fusion and decoding give frame t's masks; unless t is the last frame, it is
   memorised with the *predicted* soft masks.

``model.id_association=per_object`` (Table 1 "W/O Temporal Memory") has no temporal memory: each
frame runs STML once per object with that object's reference masks patch-embedded into the
references, and decodes every object from its own pass.

Empty object slots (``selector`` 0) get zero masks and zero object tokens, are hidden as keys in
STML and are zeroed before the soft aggregation, so they change nothing. The reference draws come
from the caller's ``torch.Generator`` (saved in checkpoints, so that a resumed run draws what an
uninterrupted one would).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from s3.stma.convvit import StemOutput
from s3.stma.network import STMANetwork
from s3.train.recurrent import ClipPrediction, draw_past_frames, first_frame_masks


class STMAClipModel(nn.Module):
    """Wraps :class:`STMANetwork` so that one ``forward`` runs a whole training clip (what DDP wraps)."""

    def __init__(self, network: STMANetwork, num_references: int) -> None:
        super().__init__()
        if num_references < 1:
            raise ValueError(f"STMAClipModel: num_references={num_references} must be >= 1")
        self.network = network
        self.num_references = num_references

    def forward(
        self, frames: Tensor, first_labels: Tensor, selector: Tensor, generator: torch.Generator
    ) -> ClipPrediction:
        """frames (B, T, 3, H, W) in [0, 1], H and W multiples of ``model.pad_multiple``;
        first_labels (B, H, W) int64 ground truth of frame 0 in 0..N; selector (B, N) 0/1 real objects;
        generator: CPU generator for the reference draws -> :class:`ClipPrediction` of frames
        1..T-1 (logits and probs (B, T-1, N+1, H, W); no auxiliary logits)."""
        b, t = frames.shape[:2]
        if t < 2:
            raise ValueError(f"STMAClipModel: a training clip needs >= 2 frames, got {t}")
        net = self.network
        stems = net.encode_stem(frames.flatten(0, 1))

        def per_frame(x: Optional[Tensor]) -> Optional[Tensor]:  # (B*T, ...) -> (B, T, ...)
            return None if x is None else x.unflatten(0, (b, t))

        tokens, f8, f4 = per_frame(stems.tokens), per_frame(stems.f8), per_frame(stems.f4)
        assert tokens is not None

        def stem_at(i: int) -> StemOutput:
            return StemOutput(
                tokens=tokens[:, i],
                grid=stems.grid,
                f8=None if f8 is None else f8[:, i],
                f4=None if f4 is None else f4[:, i],
            )

        batch_index = torch.arange(b, device=frames.device).unsqueeze(1)
        masks = first_frame_masks(first_labels, selector)  # (B, N, H, W)
        reference_masks = [masks]  # every memorised frame's masks, for the spatial memory

        def references(i: int) -> tuple[Tensor, Tensor]:
            """The reference tokens (B, m, L, C) and masks (B, m, N, H, W) of frame i."""
            chosen = draw_past_frames(i, self.num_references, b, generator).to(frames.device)
            return tokens[batch_index, chosen], torch.stack(reference_masks, dim=1)[batch_index, chosen]

        outputs: list[tuple[Tensor, Tensor]] = []
        if net.cfg.id_association == "per_object":
            for i in range(1, t):
                features = net.associate_per_object(stem_at(i), *references(i))
                logits, prob = net.segment_per_object(features, selector.shape[1], selector)
                outputs.append((logits, prob))
                reference_masks.append(prob[:, 1:])
        else:
            object_valid = selector > 0.5
            first = net.associate(stem_at(0))
            key, shrinkage, _ = net.transform_key(first.f16, need_selection=False)
            keys, shrinkages = [key.flatten(2)], [None if shrinkage is None else shrinkage.flatten(2)]
            values = [net.encode_mask(frames[:, 0], first.pix_feat, masks).flatten(3)]
            for i in range(1, t):
                memory_value = torch.cat(values, dim=-1)  # (B, N, CV, i*h*w)
                reference_tokens, masks_of_references = references(i)
                context = net.prepare_context(
                    net.prepare_references(reference_tokens, masks_of_references),
                    net.object_tokens(memory_value, object_valid),
                    object_valid,
                )
                features = net.associate(stem_at(i), context)
                key, shrinkage, selection = net.transform_key(features.f16)
                memory_shrinkage = None if shrinkage is None else torch.cat(shrinkages, dim=-1)
                readout, _ = net.read_memory(key, selection, torch.cat(keys, dim=-1), memory_shrinkage, memory_value)
                logits, prob = net.segment(features, net.fuse(features.pix_feat, readout), selector)
                outputs.append((logits, prob))
                if i < t - 1:
                    keys.append(key.flatten(2))
                    shrinkages.append(None if shrinkage is None else shrinkage.flatten(2))
                    values.append(net.encode_mask(frames[:, i], features.pix_feat, prob[:, 1:]).flatten(3))
                    reference_masks.append(prob[:, 1:])
        logits, probs = (torch.stack(x, dim=1) for x in zip(*outputs))
        return ClipPrediction(logits, probs)
