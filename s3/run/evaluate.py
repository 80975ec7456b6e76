"""The evaluation job behind ``scripts/eval.py``: every video of a preset through the inference
engine of the model's architecture, predictions written as the benchmark wants them, then the
archive and local scores.

Run folder (``output_dir``)::

    Annotations/<video>/<frame>.png    palette PNGs at the original resolution (not for BURST)
    burst/<video>.json                 BURST: per-video predictions, merged into predictions.json
    Scores/<video>/<frame>.npz         save_scores=true (see s3.eval.ensemble)
    Visualizations/<video>/, <video>.mp4   visualize=true
    progress/<video>.done              finished videos (an interrupted run resumes after them)
    run_settings.json                  every setting that changes the outputs, with a fingerprint of the
                                       network's weights; resuming with other settings is refused
    run_summary.json                   frames, FPS and peak memory of the last run over this folder
    report.html                        scored runs: the HTML report (s3.eval.report)
    <exp_id>_<dataset>.zip | predictions.json, global_results-<dataset>.csv, ...

With ``torchrun``, process ``rank`` takes videos ``rank, rank + world, ...``; rank 0 waits for the
others and then packages and scores.

The output folder may not be, contain or lie inside any folder or file the preset reads
(:func:`check_output_location`): predictions never overwrite or mix with the dataset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from s3.config import to_model_config
from s3.config.eval import EvalConfig, Protocol, to_eval_config
from s3.config.inference import InferenceConfig
from s3.config.validation import InputError, InputWarning, first_line
from s3.data.frames import read_rgb
from s3.eval.datasets import DatasetError, EvalVideo, check_new_objects, input_folders, list_videos, same_aspect
from s3.eval.ensemble import SCORES_DIR, save_frame_scores
from s3.eval.report import write_report
from s3.eval.submission import burst_segmentations, make_zip, write_burst_predictions, write_prediction
from s3.eval.visualize import OverlayWriter
from s3.inference.video import image_to_tensor
from s3.model.aggregation import object_id_map
from s3.model.weights import state_fingerprint
from s3.run.architectures import build_model, make_processor
from s3.run.runtime import process_runtime
from s3.train.distributed import DistributedContext

SETTINGS_FILE = "run_settings.json"
SUMMARY_FILE = "run_summary.json"


class RunFolderError(InputError):
    """The output folder overlaps the dataset, or holds a run that cannot be resumed with these settings."""


@dataclass
class RunReport:
    """What a run did and how fast."""

    run_dir: Path
    videos_total: int
    videos_run: int = 0
    videos_skipped: int = 0
    frames: int = 0
    model_seconds: float = 0.0  # inside VideoProcessor.step only
    total_seconds: float = 0.0  # the whole per-video loop: reading, inference, resizing, writing
    peak_memory_mib: float = 0.0
    memory_kind: str = ""
    outputs: list[Path] = field(default_factory=list)
    scores: Optional[str] = None  # the readable score table
    global_metrics: Optional[dict[str, float]] = None  # J&F-Mean, J-Mean, ... in [0, 1]
    ground_truth: Optional[Path] = None  # the folder the run was scored against
    notes: list[str] = field(default_factory=list)

    @property
    def model_fps(self) -> float:
        return self.frames / self.model_seconds if self.model_seconds else 0.0

    @property
    def end_to_end_fps(self) -> float:
        return self.frames / self.total_seconds if self.total_seconds else 0.0

    def summary(self) -> dict[str, Any]:
        """What ``run_summary.json`` records (the HTML report shows it)."""
        return {
            "videos": self.videos_run,
            "frames": self.frames,
            "model_fps": round(self.model_fps, 3),
            "end_to_end_fps": round(self.end_to_end_fps, 3),
            "peak_memory_mib": round(self.peak_memory_mib, 1),
            "memory_kind": self.memory_kind,
        }

    def format(self) -> str:
        lines = [
            f"run folder: {self.run_dir}",
            f"videos: {self.videos_run} processed, {self.videos_skipped} already finished, {self.videos_total} in total",
            f"frames: {self.frames}; model-only FPS {self.model_fps:.2f}; end-to-end FPS {self.end_to_end_fps:.2f}; "
            f"peak memory {self.peak_memory_mib:.0f} MiB ({self.memory_kind})",
            *[f"wrote {p}" for p in self.outputs],
            *self.notes,
        ]
        if self.scores:
            lines.append(self.scores)
        return "\n".join(lines)


@dataclass
class VideoStats:
    frames: int
    model_seconds: float
    total_seconds: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_output_location(run_dir: Path, inputs: dict[str, Path]) -> None:
    """Refuse an output folder that is, contains or lies inside an input folder or file (``inputs``:
    key -> path): the written ``Annotations/`` would overwrite or mix with the dataset."""
    out = run_dir.expanduser().resolve()
    for key, path in inputs.items():
        source = path.expanduser().resolve()
        if out == source or out in source.parents or source in out.parents:
            relation = "is" if out == source else "contains" if out in source.parents else "lies inside"
            raise RunFolderError(
                f"output_dir={run_dir}: {relation} the input {source} ({key}); predictions would overwrite or "
                "mix with the dataset: choose an output_dir outside it"
            )


def run_settings(
    cfg: EvalConfig, protocol: Protocol, inference: InferenceConfig, model_cfg: Any, network: nn.Module
) -> dict[str, Any]:
    """Every setting that changes what a run writes, and a fingerprint of the network's weights (a
    checkpoint retrained in place keeps its path, not its fingerprint)."""
    return {
        "dataset": cfg.dataset.name,
        "model": model_cfg.name,
        "weights": cfg.weights,
        "weights_fingerprint": state_fingerprint(network),
        "protocol": protocol.as_dict(),
        "inference": dataclasses.asdict(inference),
        "dataset_config": dataclasses.asdict(cfg.dataset),
        "model_config": dataclasses.asdict(model_cfg),
        "outputs": {"save_scores": cfg.save_scores, "visualize": cfg.visualize},
    }


def _read_settings(path: Path) -> dict[str, Any]:
    try:
        settings = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFolderError(
            f"{path}: unreadable ({first_line(err)}); set resume=false to start this run over, or another output_dir"
        ) from None
    if not isinstance(settings, dict):
        raise RunFolderError(f"{path}: not a settings file; set resume=false to start this run over")
    return settings


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _prepare_run_dir(run_dir: Path, settings: dict[str, Any], resume: bool) -> None:
    path = run_dir / SETTINGS_FILE
    if resume and path.is_file():
        previous = _read_settings(path)
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise RunFolderError(
                f"{path}: this output folder holds a run with other settings ({', '.join(changed)} differ); "
                "set output_dir or exp_id for a new run, or resume=false to start it over"
            )
    if not resume:
        shutil.rmtree(run_dir / "progress", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _done_marker(run_dir: Path, video_name: str) -> Path:
    return run_dir / "progress" / f"{video_name}.done"


def _resize_probabilities(prob: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(prob.shape[-2:]) == size:
        return prob
    return F.interpolate(prob.unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0]


def evaluate_video(
    video: EvalVideo,
    new_processor: Callable[[], Any],
    device: torch.device,
    protocol: Protocol,
    cfg: EvalConfig,
    run_dir: Path,
) -> VideoStats:
    """Run one video through a fresh engine from ``new_processor`` and write what it needs; the done
    marker is written last."""
    processor = new_processor()
    overlays = OverlayWriter(run_dir / "Visualizations" / video.name) if cfg.visualize else None
    burst_masks: dict[str, np.ndarray] = {}
    seen: set[int] = set()
    model_seconds = 0.0
    start = time.perf_counter()
    last = len(video.frames) - 1
    frame_size: Optional[tuple[int, int]] = None
    for n, frame_path in enumerate(video.frames):
        name = frame_path.stem
        rgb = read_rgb(frame_path)
        frame_size = _check_frame_size(video, frame_path, rgb.shape[:2], frame_size)
        mask = video.input_mask(name, frame_size)
        mask_tensor = None
        if mask is not None:
            ids = [int(i) for i in np.unique(mask) if i != 0]
            if not ids and not seen:
                void = video.void_label
                hint = f" (void {void} is not one; dataset.void_label=null makes it one)" if void is not None else ""
                warnings.warn(InputWarning(
                    f"{video.mask_location(name)}: the first mask of video {video.name} holds no object{hint}; "
                    "nothing is tracked until a mask adds one"
                ))
            if protocol.use_all_masks:
                check_new_objects(video, name, ids, seen)
            seen.update(ids)
            mask_tensor = torch.from_numpy(mask)
        _sync(device)
        tic = time.perf_counter()
        prediction = processor.step(image_to_tensor(rgb), mask_tensor, end=n == last)
        _sync(device)
        model_seconds += time.perf_counter() - tic
        if not video.saves(name):
            continue
        prob = _resize_probabilities(prediction.probabilities, video.output_size)
        id_mask = object_id_map(prob, prediction.object_ids).cpu().numpy()
        if video.burst_sequence is not None:
            burst_masks[name] = id_mask
        else:
            write_prediction(run_dir / "Annotations" / video.name / f"{name}.png", id_mask)
        if cfg.save_scores:
            save_frame_scores(run_dir / SCORES_DIR / video.name / f"{name}.npz", prob.cpu().numpy(), prediction.object_ids)
        if overlays is not None:
            if rgb.shape[:2] != video.output_size:
                rgb = cv2.resize(rgb, video.output_size[::-1], interpolation=cv2.INTER_AREA)
            overlays.add(name, rgb, id_mask)
    if overlays is not None:
        overlays.close()
    if video.burst_sequence is not None:
        segmentations = burst_segmentations(burst_masks, video.burst_sequence["annotated_image_paths"])
        path = run_dir / "burst" / f"{video.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(segmentations))
    marker = _done_marker(run_dir, video.name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return VideoStats(len(video.frames), model_seconds, time.perf_counter() - start)


def _check_frame_size(
    video: EvalVideo, frame_path: Path, size: tuple[int, int], first: Optional[tuple[int, int]]
) -> tuple[int, int]:
    """The video's frame size: ``size`` of its first frame (whose aspect ratio the written size must
    share); every later frame must have it."""
    size = (int(size[0]), int(size[1]))
    if first is None:
        if not same_aspect(size, video.output_size):
            raise DatasetError(
                f"{frame_path}: frame size {size[1]}x{size[0]} and the written size {video.output_size[1]}x"
                f"{video.output_size[0]} (dataset.output_size_dir) differ in aspect ratio"
            )
        return size
    if size != first:
        raise DatasetError(
            f"{frame_path}: frame size {size[1]}x{size[0]} differs from the first frame of video {video.name} "
            f"({first[1]}x{first[0]}); every frame of a video must have one size"
        )
    return first


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def _gather(report: RunReport, world: int, device: torch.device) -> None:
    """Sum the counters over torchrun processes (peak memory: the maximum)."""
    totals = torch.tensor(
        [report.videos_run, report.videos_skipped, report.frames, report.model_seconds, report.total_seconds],
        dtype=torch.float64,
        device=device,
    )
    dist.all_reduce(totals)
    peak = torch.tensor([report.peak_memory_mib], dtype=torch.float64, device=device)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    report.videos_run, report.videos_skipped, report.frames = (int(v) for v in totals[:3].tolist())
    report.model_seconds, report.total_seconds = totals[3].item() / world, totals[4].item() / world
    report.peak_memory_mib = peak.item()


def _read_video_predictions(run_dir: Path, video: str) -> Any:
    path = run_dir / "burst" / f"{video}.json"
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError) as err:
        raise RunFolderError(
            f"{path}: unreadable ({first_line(err)}); delete {_done_marker(run_dir, video)} and resume"
        ) from None


def _finalise(cfg: EvalConfig, videos: list[EvalVideo], run_dir: Path, report: RunReport) -> None:
    dataset = cfg.dataset
    names = [v.name for v in videos]
    if dataset.submission == "burst_json":
        assert dataset.burst_json is not None
        per_video = {n: _read_video_predictions(run_dir, n) for n in names}
        template = Path(dataset.burst_json)
        template = template if template.is_absolute() else Path(dataset.root) / template
        report.outputs.append(write_burst_predictions(template, per_video, run_dir / "predictions.json"))
    elif dataset.submission != "none" and cfg.make_zip:
        zip_path = run_dir / f"{cfg.exp_id}_{dataset.name}.zip"
        report.outputs.append(make_zip(run_dir / "Annotations", names, dataset.submission, zip_path))
    if not cfg.score or dataset.score_mode == "none":
        return
    gt_dir = Path(dataset.gt_dir or dataset.mask_dir)
    gt_dir = gt_dir if gt_dir.is_absolute() else Path(dataset.root) / gt_dir
    if not gt_dir.is_dir():
        report.notes.append(f"not scored: no ground truth at {gt_dir}")
        return
    from s3.eval.scoring import evaluate_sequences, write_csvs

    table = evaluate_sequences(
        gt_dir, run_dir / "Annotations", names, dataset.score_mode, cfg.score_workers, cfg.progress
    )
    report.outputs.extend(write_csvs(table, run_dir, dataset.name))
    report.scores = table.format()
    report.global_metrics = table.global_metrics()
    report.ground_truth = gt_dir


def _write_html_report(cfg: EvalConfig, protocol: Protocol, run_dir: Path, report: RunReport) -> None:
    """The HTML report of a scored run, thumbnails drawn on the frames at the ground truth's size."""
    assert report.ground_truth is not None
    frames = Path(cfg.dataset.output_size_dir or protocol.image_dir)
    frames = frames if frames.is_absolute() else Path(cfg.dataset.root) / frames
    report.outputs.append(
        write_report(run_dir, report.ground_truth, frames if frames.is_dir() else None, set_name=cfg.dataset.name)
    )


def run_evaluation(
    cfg: EvalConfig,
    network: nn.Module,
    model_cfg: Any,
    run_dir: Path,
    ctx: Optional[DistributedContext] = None,
) -> RunReport:
    """Evaluate ``network`` (built from ``model_cfg``) on the preset of ``cfg``, writing into ``run_dir``
    (see the module docstring). ``ctx``: where this process sits among torchrun's processes (default:
    a single process on the network's device)."""
    device = next(network.parameters()).device
    ctx = ctx or DistributedContext(rank=0, local_rank=0, world_size=1, device=device)
    protocol = cfg.protocol()
    inference = cfg.inference_config()
    check_output_location(run_dir, input_folders(cfg.dataset, protocol))
    videos = list_videos(cfg.dataset, protocol)
    settings = run_settings(cfg, protocol, inference, model_cfg, network)
    if ctx.is_main:
        _prepare_run_dir(run_dir, settings, cfg.resume)
    if ctx.is_distributed:
        dist.barrier()
    report = RunReport(run_dir=run_dir, videos_total=len(videos))
    mine = videos[ctx.rank :: ctx.world_size]
    todo = [v for v in mine if not (cfg.resume and _done_marker(run_dir, v.name).is_file())]
    report.videos_skipped = len(mine) - len(todo)
    bar = tqdm(todo, desc=cfg.dataset.name, unit="video", disable=not cfg.progress or not ctx.is_main)
    for video in bar:
        stats = evaluate_video(
            video, lambda: make_processor(network, model_cfg, inference), device, protocol, cfg, run_dir
        )
        report.videos_run += 1
        report.frames += stats.frames
        report.model_seconds += stats.model_seconds
        report.total_seconds += stats.total_seconds
    report.peak_memory_mib, report.memory_kind = _peak_memory(device)
    if ctx.is_distributed:
        _gather(report, ctx.world_size, device)
        dist.barrier()
    if ctx.is_main:
        _finalise(cfg, videos, run_dir, report)
        (run_dir / SUMMARY_FILE).write_text(json.dumps(report.summary(), indent=2, sort_keys=True) + "\n")
        if cfg.report and report.ground_truth is not None:
            _write_html_report(cfg, protocol, run_dir, report)
    return report


def evaluate(cfg: EvalConfig, model_cfg: Any) -> tuple[RunReport, bool]:
    """The whole job: open the process runtime, build the network (``cfg.weights`` when set, else
    the model's own weight keys; random weights seeded by ``cfg.seed`` otherwise), run the
    evaluation. Returns the report and whether this is the process that should print it."""
    if cfg.weights:
        model_cfg = dataclasses.replace(model_cfg, weights=cfg.weights)
    with process_runtime(cfg.device, cfg.threads) as ctx:
        torch.manual_seed(cfg.seed)
        network = build_model(model_cfg).to(ctx.device)
        report = run_evaluation(cfg, network, model_cfg, Path(cfg.output_dir), ctx)
        report.notes.append(f"model={model_cfg.name} dataset={cfg.dataset.name} protocol={cfg.protocol().as_dict()}")
        if not model_cfg.weights:
            report.notes.append("weights=null: the network has random weights")
        return report, ctx.is_main


def evaluate_from_config(node: DictConfig) -> tuple[RunReport, bool]:
    """:func:`evaluate` on a composed ``eval`` config (``configs/eval.yaml``)."""
    return evaluate(to_eval_config(node), to_model_config(node.model))
