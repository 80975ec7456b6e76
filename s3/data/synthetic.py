"""Synthetic VOS videos: textured objects moving over textured backgrounds, written as DAVIS or YouTube-VOS.

A video is planned first (:func:`plan_video`): a background canvas with a slow camera pan, and objects
that each carry a sprite (a binary shape and an RGB texture in the object's own coordinates) and a
per-frame pose (centre, scale, rotation, depth, non-rigid warp phase). Rendering
(:func:`render_plan`) maps every frame pixel near an object back into its sprite with ``cv2.remap``
and pastes the objects far to near, so the label map is exact and occlusion follows the depth order.

Everything random comes from one ``numpy.random.Generator`` seeded per video, so a seed and a config
always give the same arrays, and :func:`generate_dataset` always writes the same bytes.
"""

from __future__ import annotations

import colorsys
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from s3.config.synthetic import SyntheticConfig
from s3.data.palette import write_mask

SHAPES = ("ellipse", "polygon", "blob", "star", "crescent")  # also the YouTube-VOS "category" of an object
PATTERNS = ("stripes", "checker", "rings", "waves", "noise")
SPRITE_SIZE = 256  # side of a sprite in pixels
SPRITE_EXTENT = 1.3  # a sprite spans [-extent, extent] object radii; shapes fit in the unit disc
NUM_PATH_KEYS = 5  # centre and scale are splines through keys at t = 0, 1/4, 1/2, 3/4, 1
MIN_VISIBLE_FRACTION = 0.5  # share of an object's area that must show where it is first annotated
MAX_PLAN_ATTEMPTS = 200
SPLIT_CODES = {"train": 0, "val": 1}  # second entry of a video's seed
YTVOS_SPLIT_DIRS = {"train": "train", "val": "valid"}
YTVOS_FRAME_STEP = 5  # YouTube-VOS names its 6 fps frames by their 30 fps index: 00000, 00005, ...
DAVIS_RESOLUTION = "480p"  # the DAVIS folder name, whatever the frame size
MARKER_FILE = "synthetic.json"  # written last: the config a finished dataset was made with
GENERATED_ENTRIES = ("JPEGImages", "Annotations", "ImageSets", "train", "valid", MARKER_FILE)


@dataclass(frozen=True)
class Sprite:
    """An object's look in its own coordinates (object radius = SPRITE_SIZE / (2 * SPRITE_EXTENT) pixels)."""

    mask: np.ndarray  # (N, N) uint8, 255 inside the shape, 0 outside
    texture: np.ndarray  # (N, N, 3) uint8 RGB

    @property
    def area_fraction(self) -> float:
        return float(np.count_nonzero(self.mask)) / self.mask.size


@dataclass(frozen=True)
class ObjectPlan:
    """One object (or unannotated distractor) of a video, with its pose at every frame."""

    label: int  # pixel value in the masks; 0 for a look-alike distractor
    category: str  # the shape name
    sprite: Sprite
    radius: float  # pixels at scale 1
    centres: np.ndarray  # (T, 2) x, y in pixels
    scales: np.ndarray  # (T,)
    angles: np.ndarray  # (T,) radians, clockwise on screen (image y points down)
    depths: np.ndarray  # (T,) larger is nearer the camera
    warp_amplitude: float  # non-rigid warp in object radii; 0 for a rigid object
    warp_frequency: float  # radians per object radius
    warp_phases: np.ndarray  # (T,)
    first_frame: int  # the object is drawn from this frame on (> 0: appears mid-video)
    leaves: bool  # the path leaves the frame and comes back

    def pixel_area(self, frame: int) -> float:
        """Area in pixels of the whole (unoccluded, unclipped) object at ``frame``."""
        side = 2 * SPRITE_EXTENT * self.radius * self.scales[frame]
        return self.sprite.area_fraction * side * side


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render a video."""

    frame_size: tuple[int, int]  # H, W
    background: np.ndarray  # (H + pan_y, W + pan_x, 3) uint8 canvas
    pan_offsets: np.ndarray  # (T, 2) int y, x of each frame's window into the canvas
    objects: tuple[ObjectPlan, ...]  # annotated objects by label, then distractors

    @property
    def num_frames(self) -> int:
        return len(self.pan_offsets)

    @property
    def categories(self) -> dict[int, str]:
        return {obj.label: obj.category for obj in self.objects if obj.label}


class SyntheticVideo(NamedTuple):
    """A rendered video; unpacks as ``frames, labels, appear_frames``."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    labels: np.ndarray  # (T, H, W) uint8 object ids
    appear_frames: dict[int, int]  # object id -> index of the first frame it is visible in


# ----------------------------------------------------------------------------------------------------
# Sampling helpers


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32) * 255


def _interpolate_keys(keys: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Catmull-Rom spline through ``keys`` (K, D) placed evenly over [0, 1], evaluated at ``times``."""
    padded = np.concatenate([2 * keys[:1] - keys[1:2], keys, 2 * keys[-1:] - keys[-2:-1]])
    tangents = (padded[2:] - padded[:-2]) / 2
    position = times * (len(keys) - 1)
    segment = np.minimum(position.astype(int), len(keys) - 2)
    u = (position - segment)[:, None]
    return (
        (2 * u**3 - 3 * u**2 + 1) * keys[segment]
        + (u**3 - 2 * u**2 + u) * tangents[segment]
        + (-2 * u**3 + 3 * u**2) * keys[segment + 1]
        + (u**3 - u**2) * tangents[segment + 1]
    )


def _outline(rng: np.random.Generator, shape: str) -> list[np.ndarray]:
    """Polygons in object radii, inside the unit disc; the shape is the first minus the others."""
    if shape == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        minor, tilt = rng.uniform(0.45, 0.9), rng.uniform(0, np.pi)
        x, y = np.cos(theta), minor * np.sin(theta)
        rotated = np.stack([x * np.cos(tilt) - y * np.sin(tilt), x * np.sin(tilt) + y * np.cos(tilt)], 1)
        return [rotated]
    if shape == "polygon":
        sides = int(rng.integers(3, 8))
        theta = np.sort(np.arange(sides) * 2 * np.pi / sides + rng.uniform(-0.3, 0.3, sides) * np.pi / sides)
        radius = rng.uniform(0.75, 1.0, sides)
    elif shape == "blob":
        theta = np.linspace(0, 2 * np.pi, 128, endpoint=False)
        radius = np.ones_like(theta)
        for harmonic in range(2, 5):
            radius += rng.uniform(0, 0.2) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    elif shape == "star":
        points = int(rng.integers(4, 8))
        theta = np.arange(2 * points) * np.pi / points + rng.uniform(0, np.pi)
        radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, rng.uniform(0.4, 0.65))
    elif shape == "crescent":
        theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        bite = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(0.45, 0.7) * np.array([np.cos(bite), np.sin(bite)])
        outer = np.stack([np.cos(theta), np.sin(theta)], 1)
        return [outer, offset + rng.uniform(0.7, 0.85) * outer]
    else:
        raise ValueError(f"unknown shape {shape!r} (expected one of {list(SHAPES)})")
    radius = radius / radius.max()
    return [np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1)]


def _shape_mask(rng: np.random.Generator, shape: str) -> np.ndarray:
    """The sprite mask of a random ``shape``: (N, N) uint8 in {0, 255}."""
    mask = np.zeros((SPRITE_SIZE, SPRITE_SIZE), dtype=np.uint8)
    unit = SPRITE_SIZE / (2 * SPRITE_EXTENT)
    subpixel = 16  # cv2.fillPoly fixed-point shift of 4 bits
    polygons = [np.round((poly * unit + SPRITE_SIZE / 2) * subpixel).astype(np.int32) for poly in _outline(rng, shape)]
    for index, polygon in enumerate(polygons):  # fill the first polygon, erase the others
        cv2.fillPoly(mask, [polygon], 0 if index else 255, lineType=cv2.LINE_8, shift=4)
    return mask


def _pattern(rng: np.random.Generator, pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A [0, 1] pattern over the coordinate grids ``u``, ``v`` (in object radii)."""
    angle = rng.uniform(0, np.pi)
    along = u * np.cos(angle) + v * np.sin(angle)
    across = -u * np.sin(angle) + v * np.cos(angle)
    if pattern == "stripes":
        return 0.5 + 0.5 * np.sin(rng.uniform(4, 10) * along + rng.uniform(0, 2 * np.pi))
    if pattern == "checker":
        frequency = rng.uniform(4, 9)
        return 0.5 + 0.5 * np.tanh(4 * np.sin(frequency * along) * np.sin(frequency * across))
    if pattern == "rings":
        centre = rng.uniform(-0.3, 0.3, 2)
        return 0.5 + 0.5 * np.sin(rng.uniform(5, 12) * np.hypot(u - centre[0], v - centre[1]))
    if pattern == "waves":
        waves = sum(
            np.sin(rng.uniform(2, 8) * (u * np.cos(a) + v * np.sin(a)) + rng.uniform(0, 2 * np.pi))
            for a in rng.uniform(0, np.pi, 3)
        )
        return 0.5 + waves / 6
    if pattern == "noise":
        coarse = rng.uniform(0, 1, (6, 6)).astype(np.float32)
        smooth = cv2.resize(coarse, u.shape[::-1], interpolation=cv2.INTER_CUBIC)
        return 0.5 + 0.5 * np.tanh(6 * (smooth - 0.5))
    raise ValueError(f"unknown pattern {pattern!r} (expected one of {list(PATTERNS)})")


def _texture(rng: np.random.Generator, pattern: str, colours: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """An (N, N, 3) uint8 sprite texture: a two-colour ``pattern`` under a soft linear shading."""
    axis = (np.arange(SPRITE_SIZE, dtype=np.float32) + 0.5) / SPRITE_SIZE * 2 * SPRITE_EXTENT - SPRITE_EXTENT
    u, v = np.meshgrid(axis, axis)
    mix = _pattern(rng, pattern, u, v)[..., None]
    light = rng.uniform(0, 2 * np.pi)
    shading = 1 + 0.2 * (u * np.cos(light) + v * np.sin(light))[..., None] / SPRITE_EXTENT
    texture = (colours[0] * (1 - mix) + colours[1] * mix) * shading
    return np.clip(texture, 0, 255).astype(np.uint8)


def _object_colours(rng: np.random.Generator, hue: float) -> tuple[np.ndarray, np.ndarray]:
    """A saturated main colour of ``hue`` and a darker, hue-shifted second colour."""
    main = _rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.65, 1.0))
    second = _rgb(hue + rng.choice([-1, 1]) * rng.uniform(0.06, 0.2), rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.55))
    return main, second


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured (height, width, 3) uint8 canvas: colour field, flat clutter shapes, gratings and noise."""
    hues = rng.uniform(0, 1, 2)
    grid_h, grid_w = int(rng.integers(3, 6)), int(rng.integers(4, 8))
    cells = np.stack(
        [
            _rgb(rng.choice(hues) + rng.uniform(-0.05, 0.05), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.85))
            for _ in range(grid_h * grid_w)
        ]
    ).reshape(grid_h, grid_w, 3)
    canvas = np.clip(cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)

    short_side = min(height, width)
    for _ in range(int(rng.integers(4, 11))):
        outline = _outline(rng, str(rng.choice(["ellipse", "polygon", "blob", "star"])))[0]
        centre = rng.uniform(0, 1, 2) * (width, height)
        polygon = np.round((outline * rng.uniform(0.03, 0.12) * short_side + centre) * 16).astype(np.int32)
        colour = _rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.9))
        cv2.fillPoly(canvas, [polygon], colour.tolist(), lineType=cv2.LINE_AA, shift=4)

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    gratings = np.zeros((height, width), dtype=np.float32)
    for _ in range(2):
        angle, wavelength = rng.uniform(0, np.pi), rng.uniform(8, 40)
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) * (2 * np.pi / wavelength) + rng.uniform(0, 2 * np.pi)
        gratings += rng.uniform(6, 18) * np.sin(phase)
    coarse_noise = rng.normal(0, 10, (max(2, height // 6), max(2, width // 6), 3)).astype(np.float32)
    noise = cv2.resize(coarse_noise, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(canvas + gratings[..., None] + noise, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class _FrameGeometry:
    height: int
    width: int

    @property
    def diagonal(self) -> float:
        return float(np.hypot(self.height, self.width))

    def clip_inside(self, point: np.ndarray, margin: float) -> np.ndarray:
        """``point`` clamped so that it lies at least ``margin`` pixels inside (at most at the centre)."""
        low = np.minimum([margin, margin], [self.width / 2, self.height / 2])
        return np.clip(point, low, [self.width - low[0], self.height - low[1]])

    def beyond_nearest_edge(self, point: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
        """``point`` moved ``distance`` pixels beyond its nearest frame edge, and that edge's direction."""
        x, y = point
        gaps = [x, self.width - x, y, self.height - y]  # left, right, top, bottom
        edge = int(np.argmin(gaps))
        if edge < 2:
            return np.array([-distance if edge == 0 else self.width + distance, y]), np.array([0.0, 1.0])
        return np.array([x, -distance if edge == 2 else self.height + distance]), np.array([1.0, 0.0])


def _path_keys(
    rng: np.random.Generator, cfg: SyntheticConfig, frame: _FrameGeometry, extent: float, leaves: bool
) -> np.ndarray:
    """(NUM_PATH_KEYS, 2) centre keys: fully inside at t=0, travelling ``cfg.travel`` of the diagonal.

    ``extent`` is the object's largest radius at scale 1. Later keys keep the centre at least half an
    extent inside the frame, except that a leaving object spends keys 1 and 2 beyond one edge.
    """
    start = frame.clip_inside(rng.uniform(0, 1, 2) * (frame.width, frame.height), extent)
    distance = rng.uniform(*cfg.travel) * frame.diagonal
    directions = rng.uniform(0, 2 * np.pi, 32)
    candidates = start + distance * np.stack([np.cos(directions), np.sin(directions)], 1)
    inside = [c for c in candidates if np.array_equal(frame.clip_inside(c, extent / 2), c)]
    end = inside[0] if inside else frame.clip_inside(candidates[0], extent / 2)
    normal = np.array([start[1] - end[1], end[0] - start[0]]) / max(1e-6, float(np.hypot(*(end - start))))
    keys = []
    for t in np.linspace(0, 1, NUM_PATH_KEYS):
        wander = rng.uniform(-1, 1) * cfg.path_curvature * frame.diagonal * (0 < t < 1)
        keys.append(frame.clip_inside(start + (end - start) * t + normal * wander, extent / 2))
    keys[0], keys[-1] = start, end
    if leaves:
        # Two keys beyond the same edge: the spline between them bulges outwards, never back in.
        exit_point, along_edge = frame.beyond_nearest_edge((keys[0] + keys[1]) / 2, extent * cfg.scale_range[1] + 2)
        keys[1] = exit_point
        keys[2] = exit_point + along_edge * rng.uniform(-0.2, 0.2) * min(frame.height, frame.width)
    return np.stack(keys)


class _Look(NamedTuple):
    shape: str  # one of SHAPES
    pattern: str  # one of PATTERNS
    colours: tuple[np.ndarray, np.ndarray]  # RGB float32 pair the pattern mixes


def _sample_object(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    frame: _FrameGeometry,
    times: np.ndarray,
    label: int,
    look: _Look,
    radius: float,
    first_frame: int = 0,
    leaves: bool = False,
    steer_to: np.ndarray | None = None,
) -> ObjectPlan:
    """An object with a random pose track; ``steer_to`` is where its path must pass mid-video."""
    warp_amplitude = cfg.deformation * rng.uniform(0.5, 1.0) if rng.uniform() < cfg.nonrigid_prob else 0.0
    extent = radius * (1 + 1.5 * warp_amplitude)
    keys = _path_keys(rng, cfg, frame, extent, leaves)
    if steer_to is not None:
        keys[NUM_PATH_KEYS // 2] = frame.clip_inside(steer_to, extent / 2)
    log_low, log_high = np.log(cfg.scale_range[0]), np.log(cfg.scale_range[1])
    log_scale_keys = np.concatenate([[0.0], rng.uniform(log_low, log_high, NUM_PATH_KEYS - 1)])
    log_scales = np.clip(_interpolate_keys(log_scale_keys[:, None], times)[:, 0], min(log_low, 0), max(log_high, 0))
    rotation = np.deg2rad(cfg.max_rotation_deg) * rng.uniform(-1, 1)
    return ObjectPlan(
        label=label,
        category=look.shape,
        sprite=Sprite(mask=_shape_mask(rng, look.shape), texture=_texture(rng, look.pattern, look.colours)),
        radius=radius,
        centres=_interpolate_keys(keys, times),
        scales=np.exp(log_scales),
        angles=rng.uniform(0, 2 * np.pi) + rotation * times,
        depths=rng.uniform(0, 1) + rng.uniform(-1, 1) * times,
        warp_amplitude=warp_amplitude,
        warp_frequency=rng.uniform(1.5, 3.0),
        warp_phases=rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * rng.uniform(2, 4) * np.pi * times,
        first_frame=first_frame,
        leaves=leaves,
    )


def _sample_plan(rng: np.random.Generator, cfg: SyntheticConfig) -> VideoPlan:
    height, width = cfg.frame_size
    frame = _FrameGeometry(height, width)
    num_frames = int(rng.integers(cfg.num_frames[0], cfg.num_frames[1] + 1))
    times = np.arange(num_frames) / (num_frames - 1)
    num_objects = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))

    pan = np.round(np.array([height, width]) * cfg.camera_pan).astype(int)
    pan_start, pan_end = rng.uniform(0, 1, 2) * pan, rng.uniform(0, 1, 2) * pan
    pan_offsets = np.round(pan_start + (pan_end - pan_start) * times[:, None]).astype(int)
    background = _background(rng, height + int(pan[0]), width + int(pan[1]))

    first_hue = rng.uniform(0, 1)
    objects: list[ObjectPlan] = []
    looks: list[_Look] = []
    for index in range(num_objects):
        label = index + 1
        hue = first_hue + index / num_objects + rng.uniform(-0.05, 0.05)  # objects differ in hue
        look = _Look(str(rng.choice(SHAPES)), str(rng.choice(PATTERNS)), _object_colours(rng, hue))
        late = cfg.layout == "ytvos" and label > 1 and rng.uniform() < cfg.late_prob
        first_frame = int(rng.integers(1, max(2, num_frames // 2 + 1))) if late else 0
        leaves = not late and rng.uniform() < cfg.leave_prob
        radius = rng.uniform(*cfg.object_size) * min(height, width)
        partners = [o for o in objects if not o.leaves]
        steer_to = None
        if partners and not leaves and rng.uniform() < cfg.occlusion_prob:  # cross a partner's path mid-video
            partner = partners[int(rng.integers(len(partners)))]
            steer_to = partner.centres[num_frames // 2] + rng.uniform(-0.3, 0.3, 2) * partner.radius
        objects.append(_sample_object(rng, cfg, frame, times, label, look, radius, first_frame, leaves, steer_to))
        looks.append(look)

    if rng.uniform() < cfg.lookalike_prob:  # same colours as an object, another shape and pattern
        twin_index = int(rng.integers(num_objects))
        twin, twin_look = objects[twin_index], looks[twin_index]
        look = _Look(
            str(rng.choice([s for s in SHAPES if s != twin_look.shape])),
            str(rng.choice([p for p in PATTERNS if p != twin_look.pattern])),
            twin_look.colours,
        )
        radius = twin.radius * rng.uniform(0.8, 1.2)
        direction = rng.uniform(0, 2 * np.pi)
        gap = (twin.radius + radius) * rng.uniform(0.8, 1.5)
        near_twin = twin.centres[num_frames // 2] + gap * np.array([np.cos(direction), np.sin(direction)])
        objects.append(_sample_object(rng, cfg, frame, times, 0, look, radius, steer_to=near_twin))
    return VideoPlan(frame_size=(height, width), background=background, pan_offsets=pan_offsets, objects=tuple(objects))


# ----------------------------------------------------------------------------------------------------
# Rendering


def _paste(obj: ObjectPlan, frame_index: int, labels: np.ndarray, image: np.ndarray | None) -> None:
    """Draw ``obj`` as it is at ``frame_index`` over ``labels`` (and ``image`` when given), in place."""
    height, width = labels.shape
    centre_x, centre_y = obj.centres[frame_index]
    radius = obj.radius * obj.scales[frame_index]
    reach = radius * (1 + 1.5 * obj.warp_amplitude) + 1  # no pixel further out maps into the shape
    x0, x1 = max(0, int(np.floor(centre_x - reach))), min(width, int(np.ceil(centre_x + reach)) + 1)
    y0, y1 = max(0, int(np.floor(centre_y - reach))), min(height, int(np.ceil(centre_y + reach)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dx = ((np.arange(x0, x1, dtype=np.float32) - centre_x) / radius)[None, :]
    dy = ((np.arange(y0, y1, dtype=np.float32) - centre_y) / radius)[:, None]
    cos, sin = np.cos(obj.angles[frame_index]), np.sin(obj.angles[frame_index])
    local_x, local_y = cos * dx + sin * dy, cos * dy - sin * dx  # undo the rotation
    if obj.warp_amplitude:
        phase = obj.warp_phases[frame_index]
        local_x, local_y = (
            local_x + obj.warp_amplitude * np.sin(obj.warp_frequency * local_y + phase),
            local_y + obj.warp_amplitude * np.sin(obj.warp_frequency * local_x - 0.7 * phase),
        )
    unit = SPRITE_SIZE / (2 * SPRITE_EXTENT)
    map_x = (local_x * unit + (SPRITE_SIZE / 2 - 0.5)).astype(np.float32)
    map_y = (local_y * unit + (SPRITE_SIZE / 2 - 0.5)).astype(np.float32)
    inside = cv2.remap(obj.sprite.mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) > 127
    labels[y0:y1, x0:x1][inside] = obj.label
    if image is not None:
        texture = cv2.remap(obj.sprite.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        image[y0:y1, x0:x1][inside] = texture[inside]


def _composite(plan: VideoPlan, draw_frames: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """The label maps (T, H, W) and, if ``draw_frames``, the RGB frames (T, H, W, 3) of ``plan``."""
    height, width = plan.frame_size
    labels = np.zeros((plan.num_frames, height, width), dtype=np.uint8)
    frames = np.empty((plan.num_frames, height, width, 3), dtype=np.uint8) if draw_frames else None
    for index, (offset_y, offset_x) in enumerate(plan.pan_offsets):
        image = None
        if frames is not None:
            frames[index] = plan.background[offset_y : offset_y + height, offset_x : offset_x + width]
            image = frames[index]
        present = [obj for obj in plan.objects if obj.first_frame <= index]
        for obj in sorted(present, key=lambda o: o.depths[index]):  # far to near
            _paste(obj, index, labels[index], image)
    return frames, labels


def _first_visible(labels: np.ndarray, label: int) -> int | None:
    hits = np.flatnonzero((labels == label).any(axis=(1, 2)))
    return int(hits[0]) if len(hits) else None


def _meets_constraints(plan: VideoPlan, labels: np.ndarray) -> bool:
    """Each object shows well where it is first annotated; leaving objects vanish and come back."""
    for obj in plan.objects:
        if not obj.label:
            continue
        visible = np.count_nonzero(labels == obj.label, axis=(1, 2))
        if visible[obj.first_frame] < max(1.0, MIN_VISIBLE_FRACTION * obj.pixel_area(obj.first_frame)):
            return False
        if obj.leaves:
            absent = np.flatnonzero(visible[1:-1] == 0) + 1
            if not len(absent):
                return False
            later = range(absent[0] + 1, plan.num_frames)
            if not any(visible[f] >= MIN_VISIBLE_FRACTION * obj.pixel_area(f) for f in later):
                return False
    return True


def plan_video(seed: int | Sequence[int], cfg: SyntheticConfig) -> VideoPlan:
    """A random video plan meeting the visibility constraints, deterministic in ``seed`` and ``cfg``."""
    rng = np.random.default_rng(seed)
    for _ in range(MAX_PLAN_ATTEMPTS):
        plan = _sample_plan(rng, cfg)
        if _meets_constraints(plan, _composite(plan, draw_frames=False)[1]):
            return plan
    raise RuntimeError(
        f"seed {seed}: no video met the visibility constraints in {MAX_PLAN_ATTEMPTS} attempts; "
        "lower num_objects or object_size, or raise num_frames"
    )


def render_plan(plan: VideoPlan) -> SyntheticVideo:
    """Frames, exact label maps and first-appearance frames of ``plan``."""
    frames, labels = _composite(plan, draw_frames=True)
    assert frames is not None
    first_visible = {label: _first_visible(labels, label) for label in plan.categories}
    appear_frames = {label: first for label, first in first_visible.items() if first is not None}
    return SyntheticVideo(frames=frames, labels=labels, appear_frames=appear_frames)


def render_video(seed: int | Sequence[int], cfg: SyntheticConfig) -> SyntheticVideo:
    """``(frames, labels, appear_frames)`` of the video that ``seed`` and ``cfg`` define (no disk I/O)."""
    return render_plan(plan_video(seed, cfg))


# ----------------------------------------------------------------------------------------------------
# Writing datasets


def video_name(split: str, index: int) -> str:
    return f"{split}_{index:04d}"


def video_seed(cfg: SyntheticConfig, split: str, index: int) -> tuple[int, int, int]:
    """The seed of video ``index`` of ``split``; independent of how many videos the other split has."""
    return (cfg.seed, SPLIT_CODES[split], index)


def _marker_text(cfg: SyntheticConfig) -> str:
    return json.dumps({"generator": "s3.data.synthetic", "config": asdict(cfg)}, indent=2, sort_keys=True) + "\n"


def _write_frames(folder: Path, names: list[str], frames: np.ndarray, quality: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, frames):
        Image.fromarray(frame).save(folder / f"{name}.jpg", format="JPEG", quality=quality)


def _write_masks(folder: Path, names: list[str], labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, label_map in zip(names, labels):
        write_mask(folder / f"{name}.png", label_map)


def _write_davis_video(root: Path, name: str, video: SyntheticVideo, cfg: SyntheticConfig) -> None:
    names = [f"{index:05d}" for index in range(len(video.frames))]
    _write_frames(root / "JPEGImages" / DAVIS_RESOLUTION / name, names, video.frames, cfg.jpeg_quality)
    _write_masks(root / "Annotations" / DAVIS_RESOLUTION / name, names, video.labels)


def _write_ytvos_video(
    split_root: Path, name: str, video: SyntheticVideo, categories: dict[int, str], annotate_all: bool, quality: int
) -> dict[str, dict[str, object]]:
    """Write one YouTube-VOS video; returns its ``meta.json`` entry."""
    names = [f"{index * YTVOS_FRAME_STEP:05d}" for index in range(len(video.frames))]
    _write_frames(split_root / "JPEGImages" / name, names, video.frames, quality)
    objects = {}
    for label, first in sorted(video.appear_frames.items()):
        if annotate_all:
            frames = [names[f] for f in np.flatnonzero((video.labels == label).any(axis=(1, 2)))]
        else:
            frames = names[first:]
        objects[str(label)] = {"category": categories[label], "frames": frames}
    if annotate_all:
        _write_masks(split_root / "Annotations" / name, names, video.labels)
    else:  # as in YouTube-VOS valid: a mask only where objects first appear, holding only those objects
        for first in sorted(set(video.appear_frames.values())):
            starting = [label for label, f in video.appear_frames.items() if f == first]
            first_masks = np.where(np.isin(video.labels[first], starting), video.labels[first], 0)
            _write_masks(split_root / "Annotations" / name, [names[first]], first_masks[None])
        _write_masks(split_root / "Annotations_all" / name, names, video.labels)
    return {"objects": objects}


def generate_dataset(root: Path, cfg: SyntheticConfig, progress: bool = True) -> None:
    """Write every split of ``cfg`` under ``root`` (absent or empty: see :func:`prepare_root`).

    DAVIS: ``JPEGImages/480p/<video>/00000.jpg``, ``Annotations/480p/<video>/00000.png`` (every frame)
    and ``ImageSets/2017/{train,val}.txt``. YouTube-VOS: ``{train,valid}/JPEGImages/<video>/00000.jpg``
    (frames named 00000, 00005, ...), ``Annotations`` (train: every frame; valid: first appearances
    only) and ``meta.json``; valid also gets every frame's ground truth in ``Annotations_all``.
    ``synthetic.json`` (the config) is written last and marks the dataset as complete.
    """
    root = Path(root)
    splits = [(split, getattr(cfg.num_videos, split)) for split in SPLIT_CODES]
    with tqdm(total=sum(count for _, count in splits), desc=f"synthetic {cfg.layout}", disable=not progress) as bar:
        for split, count in splits:
            if not count:
                continue
            names = [video_name(split, index) for index in range(count)]
            meta: dict[str, dict[str, object]] = {}
            for index, name in enumerate(names):
                plan = plan_video(video_seed(cfg, split, index), cfg)
                video = render_plan(plan)
                if cfg.layout == "davis":
                    _write_davis_video(root, name, video, cfg)
                else:
                    split_root = root / YTVOS_SPLIT_DIRS[split]
                    meta[name] = _write_ytvos_video(
                        split_root, name, video, plan.categories, split == "train", cfg.jpeg_quality
                    )
                bar.update()
            if cfg.layout == "davis":
                image_sets = root / "ImageSets" / "2017"
                image_sets.mkdir(parents=True, exist_ok=True)
                (image_sets / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
            else:
                meta_text = json.dumps({"videos": meta}, indent=2, sort_keys=True) + "\n"
                (root / YTVOS_SPLIT_DIRS[split] / "meta.json").write_text(meta_text)
    (root / MARKER_FILE).write_text(_marker_text(cfg))


def prepare_root(root: Path, cfg: SyntheticConfig, overwrite: bool = False) -> bool:
    """Make ``root`` ready for :func:`generate_dataset`; False when it already holds exactly this dataset.

    A non-empty ``root`` that is not a finished dataset of ``cfg`` is refused unless ``overwrite``,
    which deletes the generator's own entries there (and leaves any other file alone).
    """
    root = Path(root)
    if not root.exists() or not any(root.iterdir()):
        return True
    marker = root / MARKER_FILE
    same = marker.is_file() and marker.read_text() == _marker_text(cfg)
    if same and not overwrite:
        return False
    if not overwrite:
        if marker.is_file():
            raise FileExistsError(f"{root}: holds a synthetic dataset made with another config; pass overwrite=true")
        raise FileExistsError(f"{root}: not empty and not a finished synthetic dataset; pass overwrite=true")
    for entry in GENERATED_ENTRIES:
        path = root / entry
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return True
