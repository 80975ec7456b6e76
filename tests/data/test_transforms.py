"""Joint clip augmentation and cut-and-paste: image and mask stay aligned, frames share geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from s3.config.data import AugmentationConfig
from s3.data.paste import paste_clip
from s3.data.transforms import ClipAugmentation, GeometryDraw, resample_frames, resample_labels, sample_crop

# label -> RGB; the fill colour of warped-in pixels decodes to background, like the mask fill
COLOURS = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)}
FILL = (124, 116, 104)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster


def colour_coded_clip(num_frames: int = 4, height: int = 72, width: int = 108) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames whose flat colour regions encode the labels; objects move a little from frame to frame."""
    labels = torch.zeros(num_frames, height, width, dtype=torch.int64)
    for t in range(num_frames):
        labels[t, 10 + t : 40 + t, 15:55] = 1
        labels[t, 30:62, 50 + 2 * t : 95 + 2 * t] = 2
        labels[t, 50:70, 5:30] = 3
    palette = torch.tensor([COLOURS[k] for k in sorted(COLOURS)], dtype=torch.uint8)
    return palette[labels].permute(0, 3, 1, 2).contiguous(), labels


def decode_colours(frames: torch.Tensor, tolerance: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(label of the nearest reference colour, whether the pixel is that colour within tolerance)."""
    references = torch.tensor([*COLOURS.values(), FILL], dtype=torch.float32)  # (5, 3) in 0..255
    reference_labels = torch.tensor([*COLOURS.keys(), 0])
    pixels = frames.permute(0, 2, 3, 1) * 255.0  # (T, H, W, 3)
    distance = (pixels.unsqueeze(-2) - references).abs().amax(dim=-1)  # (T, H, W, 5)
    nearest = distance.argmin(dim=-1)
    return reference_labels[nearest], distance.amin(dim=-1) <= tolerance


def warp(
    augmentation: ClipAugmentation, frames: torch.Tensor, labels: torch.Tensor, draw: GeometryDraw
) -> tuple[torch.Tensor, torch.Tensor]:
    """The geometry of ``draw`` alone, as ``ClipAugmentation.__call__`` applies it: (labels, frames)."""
    positions = augmentation.source_positions(draw, *labels.shape[-2:])
    return resample_labels(labels, positions), resample_frames(frames, positions, augmentation.output_shrink(draw),
                                                               augmentation.fill)


def geometry_only(**changes: object) -> AugmentationConfig:
    return dataclasses.replace(AugmentationConfig(color=False), **changes)


def test_mask_drawn_from_the_image_stays_exact() -> None:
    frames, labels = colour_coded_clip()
    augmentation = ClipAugmentation(geometry_only(), crop_size=80)
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(25):
        out = augmentation(frames, labels, rng)
        assert out is not None
        out_frames, out_labels = out
        assert out_frames.shape == (4, 3, 80, 80) and out_frames.dtype == torch.float32
        assert out_labels.shape == (4, 80, 80) and out_labels.dtype == torch.int64
        assert set(out_labels.unique().tolist()) <= {0, 1, 2, 3}  # nearest: no blended ids
        colour_labels, flat = decode_colours(out_frames)
        assert flat.float().mean() > 0.6  # most pixels are away from a boundary and can be checked
        mismatches = (colour_labels != out_labels) & flat
        assert not mismatches.any(), f"{int(mismatches.sum())} pixels where mask and image disagree"
        compared += int(flat.sum())
    assert compared > 25 * 4 * 80 * 80 * 0.6


def test_mask_and_image_stay_aligned_with_colour_augmentation() -> None:
    # photometric changes move the colours, but the labelled regions must still be the flat ones
    frames, labels = colour_coded_clip()
    augmentation = ClipAugmentation(AugmentationConfig(grayscale_probability=0.0), crop_size=80)
    out_frames, out_labels = augmentation(frames, labels, np.random.default_rng(3))
    for label in (1, 2, 3):
        region = out_frames.permute(0, 2, 3, 1)[out_labels == label]
        if len(region) > 50:
            spread = (region - region.median(dim=0).values).abs().amax(dim=-1)
            assert (spread < 0.05).float().mean() > 0.9  # one flat colour per label, bar the edges


def test_every_frame_gets_the_same_geometry_and_colour() -> None:
    frames, labels = colour_coded_clip(num_frames=1)
    frames, labels = frames.expand(6, -1, -1, -1).contiguous(), labels.expand(6, -1, -1).contiguous()
    augmentation = ClipAugmentation(AugmentationConfig(grayscale_probability=0.5), crop_size=64)
    rng = np.random.default_rng(1)
    for _ in range(10):
        out_frames, out_labels = augmentation(frames, labels, rng)
        assert torch.equal(out_labels, out_labels[:1].expand_as(out_labels))
        assert torch.allclose(out_frames, out_frames[:1].expand_as(out_frames), atol=1e-6)


def test_flip_only_matches_a_mirrored_resize() -> None:
    frames, labels = colour_coded_clip()
    augmentation = ClipAugmentation(geometry_only(affine=False, random_crop=False), crop_size=72)
    squash = torch.nn.functional.interpolate(labels[:, None].float(), size=(72, 72), mode="nearest-exact")[:, 0].long()
    outcomes = set()
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, out_labels = augmentation(frames, labels, rng)
        flipped = torch.equal(out_labels, squash.flip(-1))
        assert flipped or torch.equal(out_labels, squash)
        outcomes.add(flipped)
    assert outcomes == {True, False}


def torchvision_in_sequence(
    frames: torch.Tensor, labels: torch.Tensor, draw: GeometryDraw, cfg: AugmentationConfig, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: torchvision's transforms one after the other on the whole frame (flip, rotation
    + shear, crop, resize), as Cutie's recipe reads."""
    video, masks = tv_tensors.Video(frames), tv_tensors.Mask(labels)
    if draw.flip:
        video, masks = F.horizontal_flip(video), F.horizontal_flip(masks)
    affine = dict(angle=draw.angle, translate=[0, 0], scale=1.0, shear=[draw.shear, 0.0])
    video = F.affine(video, **affine, interpolation=InterpolationMode.BILINEAR, fill=[v / 255 for v in cfg.fill])
    masks = F.affine(masks, **affine, fill=0)
    video = F.resized_crop(video, *draw.crop, size=[size, size], antialias=True)
    masks = F.resize(F.crop(masks, *draw.crop), [size, size], interpolation=InterpolationMode.NEAREST_EXACT)
    return video.as_subclass(torch.Tensor), masks.as_subclass(torch.Tensor)


def test_one_resampling_matches_torchvision_transforms_in_sequence() -> None:
    # smooth images and blobby labels: the composed warp reads what the sequential one does, bar
    # nearest-neighbour ties on label boundaries (two nearest resamplings against one) and the
    # order of the antialiasing
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(3, 4, 12, 18, generator=generator)
    frames = torch.nn.functional.interpolate(noise, size=(120, 180), mode="bicubic").clamp(0, 1).transpose(0, 1)
    labels = (torch.nn.functional.interpolate(torch.rand(1, 4, 8, 12, generator=generator), size=(120, 180),
                                              mode="bilinear")[0] * 4).long()
    cfg = geometry_only()
    augmentation = ClipAugmentation(cfg, crop_size=64)
    rng = np.random.default_rng(0)
    for _ in range(20):
        draw = augmentation.sample_geometry(120, 180, rng)
        ref_frames, ref_labels = torchvision_in_sequence(frames, labels, draw, cfg, 64)
        out_labels, out_frames = warp(augmentation, frames, labels, draw)
        assert out_labels.shape == ref_labels.shape and out_frames.shape == ref_frames.shape
        assert (out_labels == ref_labels).float().mean() > 0.95
        ref_nearby = torch.nn.functional.max_pool2d(  # (T, 5, S, S): labels within the reference's 3x3
            torch.nn.functional.one_hot(ref_labels, 5).permute(0, 3, 1, 2).float(), 3, stride=1, padding=1
        )
        assert ref_nearby.gather(1, out_labels[:, None]).mean() > 0.999  # disagreements are boundary ties
        assert (out_frames - ref_frames).abs().mean() < 0.01
    identity = GeometryDraw(flip=False, angle=0.0, shear=0.0, crop=(10, 20, 64, 64))  # 1:1 crop: exact copy
    identity_labels, identity_frames = warp(augmentation, frames, labels, identity)
    assert torch.equal(identity_labels, labels[:, 10:74, 20:84])
    assert torch.allclose(identity_frames, frames[..., 10:74, 20:84], atol=1e-5)


def whole_frame_read(frames: torch.Tensor, positions: torch.Tensor, shrink: float, fill: list[float]) -> torch.Tensor:
    """The simple reference for ``resample_frames``: shrink and read the whole frame."""
    height, width = frames.shape[-2:]
    grid = torch.stack([(positions[..., 0] + 0.5) * (2 / width) - 1, (positions[..., 1] + 0.5) * (2 / height) - 1], -1)
    if shrink < 1:
        size = (round(height * shrink), round(width * shrink))
        frames = torch.nn.functional.interpolate(frames, size=size, mode="bilinear", antialias=True)
    colour = torch.tensor(fill).view(1, 3, 1, 1)
    grid = grid.float().expand(frames.shape[0], -1, -1, -1)
    return torch.nn.functional.grid_sample(frames - colour, grid, align_corners=False) + colour


def test_reading_only_the_touched_window_matches_reading_the_whole_frame() -> None:
    generator = torch.Generator().manual_seed(1)
    frames = torch.nn.functional.interpolate(torch.rand(4, 3, 12, 20, generator=generator), size=(150, 250),
                                             mode="bicubic").clamp(0, 1)
    as_bytes = (frames * 255).round().to(torch.uint8)
    fill = [0.5, 0.4, 0.3]
    augmentation = ClipAugmentation(geometry_only(crop_scale=[0.05, 1.0]), crop_size=48)
    rng = np.random.default_rng(0)
    for _ in range(30):  # crops from 5% to the whole frame, rotated and sheared, some reaching outside
        draw = augmentation.sample_geometry(150, 250, rng)
        positions = augmentation.source_positions(draw, 150, 250)
        shrink = augmentation.output_shrink(draw)
        expected = whole_frame_read(frames, positions, shrink, fill)
        out = resample_frames(frames, positions, shrink, fill)
        if shrink >= 1:  # no shrink: the same bilinear weights, read from a smaller tensor
            assert torch.allclose(out, expected, atol=1e-5)
        else:  # the window's shrunk size rounds differently from the frame's: sub-pixel shifts only, and
            # none at the window's edges (a window cut at the filters' reach differs there by up to 0.2)
            assert (out - expected).abs().mean() < 0.004 and (out - expected).abs().max() < 0.04
        from_bytes = resample_frames(as_bytes, positions, shrink, fill)  # uint8 in: converted like float in
        assert torch.allclose(from_bytes, resample_frames(as_bytes.float() / 255, positions, shrink, fill), atol=1e-6)
    outside = torch.full((8, 8, 2), -50.0)  # every position left of and above the frame: all fill
    assert torch.equal(resample_frames(frames, outside, 1.0, fill), torch.tensor(fill).view(1, 3, 1, 1).expand(4, 3, 8, 8))


def test_same_generator_state_gives_the_same_clip() -> None:
    frames, labels = colour_coded_clip()
    augmentation = ClipAugmentation(AugmentationConfig(), crop_size=64)
    first = augmentation(frames, labels, np.random.default_rng(7))
    second = augmentation(frames, labels, np.random.default_rng(7))
    other = augmentation(frames, labels, np.random.default_rng(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_crops_are_redrawn_until_the_first_frame_shows_an_object() -> None:
    labels = torch.zeros(3, 100, 100, dtype=torch.int64)
    labels[0, 95:, 95:] = 1  # a tiny object in a corner of the first frame only
    labels[1:, 40:60, 40:60] = 1
    frames = torch.zeros(3, 3, 100, 100, dtype=torch.uint8)
    augmentation = ClipAugmentation(geometry_only(crop_scale=[0.36, 0.4]), crop_size=32)
    rng = np.random.default_rng(0)
    results = [augmentation(frames, labels, rng) for _ in range(40)]
    kept = [r for r in results if r is not None]
    assert kept and all(r[1][0].any() for r in kept)
    assert augmentation(frames, torch.zeros_like(labels), rng) is None


def test_random_crops_stay_inside_the_frame_with_the_requested_area() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = sample_crop(48, 85, (0.36, 1.0), (0.75, 4 / 3), rng)
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 85
        assert 0.3 <= h * w / (48 * 85) <= 1.0


def test_paste_clip_blends_objects_and_shifts_their_ids() -> None:
    base_labels = torch.zeros(2, 40, 40, dtype=torch.int64)
    base_labels[:, 5:20, 5:20] = 2
    other_labels = torch.zeros(2, 40, 40, dtype=torch.int64)
    other_labels[:, 10:30, 22:38] = 1
    other_labels[:, 12:16, 10:14] = 4  # overlaps a base object
    base_frames = torch.full((2, 3, 40, 40), 0.2)
    other_frames = torch.full((2, 3, 40, 40), 0.9)
    frames, labels = paste_clip(base_frames, base_labels, other_frames, other_labels)
    assert set(labels.unique().tolist()) == {0, 2, 3, 6}  # pasted 1 -> 3 and 4 -> 6: above the base ids
    assert torch.equal(labels == 3, other_labels == 1) and torch.equal(labels == 6, other_labels == 4)
    assert (labels[base_labels == 2] != 2).sum() == 2 * 16  # the base object lost its hidden pixels
    assert torch.allclose(frames[:, :, 14:26, 26:34], torch.tensor(0.9))  # pasted interior: other clip
    assert torch.allclose(frames[:, :, 33:, :], torch.tensor(0.2))  # far from pasted objects: base clip
    edge = frames[0, 0, 20, 20:23]  # the seam next to the pasted object at column 22 is a soft ramp
    assert 0.2 < edge[0] < edge[1] < edge[2] < 0.9
