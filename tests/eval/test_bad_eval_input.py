"""Bad input to an evaluation, class by class: input data is never overwritten or mixed, geometry is
explicit, broken files name themselves, void is not an object, and every failure of the job is one
line (through the same handler as scripts/eval.py)."""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_datasets import HEIGHT, WIDTH, frame_and_labels, make_davis, make_folders, save_image, save_labels

from s3.config import compose, load_model_config
from s3.config.eval import EvalConfig, to_eval_config
from s3.config.validation import InputWarning
from s3.data.frames import FrameFileError
from s3.data.palette import MaskFileError, read_mask
from s3.eval.datasets import DatasetError, list_videos
from s3.eval.masks import list_mask_frames
from s3.model.build import build_network
from s3.run.cli import run_job
from s3.run.evaluate import RunFolderError, evaluate_from_config, run_evaluation

VIDEOS = {"bear": 3, "cows": 3}


def eval_config(name: str, root: Path, out: Path, *extra: str) -> EvalConfig:
    return to_eval_config(compose("eval", [f"dataset={name}", "model=s3_tiny", f"dataset.root={root}",
                                           f"output_dir={out}", "progress=false", "score=false", *extra]))


def generic_config(folder: Path, out: Path, *extra: str) -> EvalConfig:
    return eval_config("generic", folder, out, "dataset.image_dir=frames", "dataset.mask_dir=masks", *extra)


def one_line_error(job, capsys: pytest.CaptureFixture) -> str:
    """What the job's handler prints, checked to be exactly one ``error:`` line with status 1."""
    with pytest.raises(SystemExit) as exit_info:
        run_job(job)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


# ---------------------------------------------------------------- input data is never overwritten or mixed
def test_an_output_folder_that_holds_or_sits_in_the_dataset_is_refused(tmp_path: Path, network) -> None:
    root = tmp_path / "davis"
    make_davis(root, VIDEOS)
    before = read_mask(root / "Annotations/480p/bear/00001.png")
    for out, relation in ((root, "contains"), (root / "Annotations/480p", "is"), (root / "JPEGImages/480p/x", "lies inside")):
        cfg = eval_config("synthetic", root, out)
        with pytest.raises(RunFolderError, match=rf"^output_dir={out}: {relation} the input .*; predictions would"):
            run_evaluation(cfg, network, network.cfg, out)
    assert np.array_equal(read_mask(root / "Annotations/480p/bear/00001.png"), before)
    assert not (root / "Annotations" / "bear").exists() and not (root / "run_settings.json").exists()
    beside = tmp_path / "runs" / "synthetic"  # outside every input: fine
    assert run_evaluation(eval_config("synthetic", root, beside), network, network.cfg, beside).videos_run == 2


def test_resume_compares_the_weights_content_not_only_their_path(tmp_path: Path, one_thread: None) -> None:
    root, out, weights = tmp_path / "davis", tmp_path / "run", tmp_path / "model.pth"
    make_davis(root, VIDEOS)
    torch.manual_seed(0)
    torch.save(build_network(load_model_config("s3_tiny")).state_dict(), weights)
    args = ["model=s3_tiny", "dataset=synthetic", f"dataset.root={root}", f"output_dir={out}", f"weights={weights}",
            "progress=false", "score=false", "threads=1"]
    report, _ = evaluate_from_config(compose("eval", args))
    assert report.videos_run == 2
    settings = json.loads((out / "run_settings.json").read_text())
    assert len(settings["weights_fingerprint"]) == 64 and settings["model_config"]["name"] == "s3_tiny"
    (out / "progress" / "cows.done").unlink()  # interrupted during "cows" ...
    torch.manual_seed(1)  # ... and the checkpoint retrained in place
    torch.save(build_network(load_model_config("s3_tiny")).state_dict(), weights)
    with pytest.raises(RunFolderError, match=r"run_settings.json: .*other settings \(weights_fingerprint differ\)"):
        evaluate_from_config(compose("eval", args))
    again, _ = evaluate_from_config(compose("eval", [*args, "resume=false"]))
    assert again.videos_run == 2


def test_a_truncated_settings_file_is_a_one_line_error(tmp_path: Path, network) -> None:
    root, out = tmp_path / "davis", tmp_path / "run"
    make_davis(root, VIDEOS)
    run_evaluation(eval_config("synthetic", root, out), network, network.cfg, out)
    text = (out / "run_settings.json").read_text()
    (out / "run_settings.json").write_text(text[: len(text) // 2])
    with pytest.raises(RunFolderError, match=r"run_settings.json: unreadable .*; set resume=false"):
        run_evaluation(eval_config("synthetic", root, out), network, network.cfg, out)


# ---------------------------------------------------------------- geometry is explicit
def test_a_mask_of_the_frames_aspect_is_resized_with_a_warning_naming_it(tmp_path: Path, network) -> None:
    folder, out = tmp_path / "user", tmp_path / "run"
    make_folders(folder, "frames", "masks", {"clip": 3}, dense=False)
    _, labels = frame_and_labels(0, [1, 2])
    half = labels[::2, ::2]  # 20x12: the aspect ratio of the 40x24 frames
    save_labels(folder / "masks" / "clip" / "00000.png", half)
    with pytest.warns(InputWarning, match=r"clip/00000.png: mask size 20x12 resized nearest-neighbour to its frame's 40x24"):
        run_evaluation(generic_config(folder, out), network, network.cfg, out)
    first = read_mask(out / "Annotations" / "clip" / "00000.png")
    assert np.array_equal(first, np.kron(half, np.ones((2, 2), np.uint8)))


def test_a_mask_of_another_aspect_ratio_is_an_error(tmp_path: Path, network) -> None:
    folder, out = tmp_path / "user", tmp_path / "run"
    make_folders(folder, "frames", "masks", {"clip": 3}, dense=False)
    save_labels(folder / "masks" / "clip" / "00000.png", np.ones((24, 24), np.uint8))
    with pytest.raises(DatasetError, match=r"clip/00000.png: mask size 24x24 does not fit its frame \(40x24"):
        run_evaluation(generic_config(folder, out), network, network.cfg, out)


def test_frames_of_another_size_within_a_video_are_an_error(tmp_path: Path, network) -> None:
    folder, out = tmp_path / "user", tmp_path / "run"
    make_folders(folder, "frames", "masks", {"clip": 3}, dense=False)
    image, _ = frame_and_labels(2, [1, 2], height=HEIGHT + 8, width=WIDTH)
    save_image(folder / "frames" / "clip" / "00002.jpg", image)
    with pytest.raises(DatasetError, match=r"clip/00002.jpg: frame size 40x32 differs from the first frame"):
        run_evaluation(generic_config(folder, out), network, network.cfg, out)


def test_a_later_mask_without_its_frame_is_an_error_not_a_lost_object(tmp_path: Path) -> None:
    folder = tmp_path / "user"
    make_folders(folder, "frames", "masks", {"clip": 3}, dense=False)
    _, labels = frame_and_labels(0, [7])
    save_labels(folder / "masks" / "clip" / "00009.png", labels)
    cfg = generic_config(folder, tmp_path / "run", "use_all_masks=true")
    with pytest.raises(DatasetError, match=r"clip/00009.png: no frame named 00009 in .*; its objects would be lost"):
        list_videos(cfg.dataset, cfg.protocol())


def test_frame_and_mask_names_sort_by_number(tmp_path: Path, network) -> None:
    folder, out = tmp_path / "user", tmp_path / "run"
    for t in range(12):
        image, labels = frame_and_labels(t, [1])
        save_image(folder / "frames" / "clip" / f"{t}.jpg", image)
        if t in (0, 10):
            save_labels(folder / "masks" / "clip" / f"{t}.png", labels if t == 0 else np.where(labels > 0, 4, 0).astype(np.uint8))
    cfg = generic_config(folder, out, "use_all_masks=true")
    (video,) = list_videos(cfg.dataset, cfg.protocol())
    assert video.frame_names == [str(t) for t in range(12)]  # text order: 0, 1, 10, 11, 2, ...
    assert sorted(video.mask_files) == ["0", "10"]
    run_evaluation(cfg, network, network.cfg, out)
    assert set(np.unique(read_mask(out / "Annotations" / "clip" / "0.png"))) == {0, 1}  # 0.png is the first
    # the scorer leaves out the first and the last frame: 0 and 11, not 0 and 9
    assert [p.stem for p in list_mask_frames(out / "Annotations" / "clip")] == [str(t) for t in range(12)]


# ---------------------------------------------------------------- broken files name themselves
def test_truncated_frames_and_masks_name_the_file(tmp_path: Path, network) -> None:
    folder, out = tmp_path / "user", tmp_path / "run"
    make_folders(folder, "frames", "masks", {"clip": 3}, dense=False)
    frame = folder / "frames" / "clip" / "00001.jpg"
    frame.write_bytes(frame.read_bytes()[:300])
    with pytest.raises(FrameFileError, match=r"clip/00001.jpg: not a readable image \(.*[Tt]runcated"):
        run_evaluation(generic_config(folder, out), network, network.cfg, out)
    mask = folder / "masks" / "clip" / "00000.png"
    mask.write_bytes(mask.read_bytes()[:40])
    with pytest.raises(MaskFileError, match=r"clip/00000.png: not a readable image"):
        run_evaluation(generic_config(folder, tmp_path / "run2"), network, network.cfg, tmp_path / "run2")


def test_a_truncated_annotation_json_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "BURST"
    (root / "val").mkdir(parents=True)
    (root / "val" / "first_frame_annotations.json").write_text('{"sequences": [{"dataset": "YFCC')
    cfg = eval_config("burst_val", root, tmp_path / "run")
    with pytest.raises(DatasetError, match=r"first_frame_annotations.json: not valid JSON, truncated\?"):
        list_videos(cfg.dataset, cfg.protocol())


# ---------------------------------------------------------------- void is not an object
def test_void_in_a_first_mask_is_not_tracked(tmp_path: Path, network) -> None:
    folder, out = tmp_path / "user", tmp_path / "run"
    make_folders(folder, "frames", "masks", {"clip": 3}, dense=False)
    _, labels = frame_and_labels(0, [1, 2])
    labels[20:, :] = 255  # void band
    save_labels(folder / "masks" / "clip" / "00000.png", labels)
    run_evaluation(generic_config(folder, out), network, network.cfg, out)
    for t in range(3):
        assert 255 not in read_mask(out / "Annotations" / "clip" / f"{t:05d}.png")
    kept = tmp_path / "run_255"
    run_evaluation(generic_config(folder, kept, "dataset.void_label=null"), network, network.cfg, kept)
    assert 255 in read_mask(kept / "Annotations" / "clip" / "00000.png")  # where 255 is declared an object


def test_a_first_mask_without_an_object_is_a_warning(tmp_path: Path, network) -> None:
    folder, out = tmp_path / "user", tmp_path / "run"
    make_folders(folder, "frames", "masks", {"clip": 3}, dense=False)
    save_labels(folder / "masks" / "clip" / "00000.png", np.full((HEIGHT, WIDTH), 255, np.uint8))
    with pytest.warns(InputWarning, match=r"clip/00000.png: the first mask of video clip holds no object \(void 255"):
        run_evaluation(generic_config(folder, out), network, network.cfg, out)


# ---------------------------------------------------------------- every failure is one line
def test_bad_weights_files_end_the_job_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "davis"
    make_davis(root, VIDEOS)
    base = ["model=s3_tiny", "dataset=synthetic", f"dataset.root={root}", f"output_dir={tmp_path / 'run'}",
            "progress=false", "threads=1"]
    (tmp_path / "empty.pth").touch()
    line = one_line_error(lambda: evaluate_from_config(compose("eval", [*base, f"weights={tmp_path / 'empty.pth'}"])),
                          capsys)
    assert line.startswith("error: model.weights: ") and "empty.pth is empty (0 bytes)" in line
    state = build_network(load_model_config("s3_tiny")).state_dict()
    state["key_proj.key_proj.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    line = one_line_error(lambda: evaluate_from_config(compose("eval", [*base, f"weights={tmp_path / 'nan.pth'}"])),
                          capsys)
    assert "nan.pth holds NaN or inf values in key_proj.key_proj.weight" in line


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("threads=-2", "error: threads must be >= 0"),
        ("threads=many", "error: threads: Value 'many' of type 'str' could not be converted to Integer"),
        ("device=gpu", "error: device='gpu' is not one of ['auto', 'cpu', 'cuda']"),
        ("dataset.void_label=300", "error: dataset.void_label must be null or a mask value in 1..255"),
    ],
)
def test_bad_settings_end_the_job_in_one_line(override: str, expected: str, capsys: pytest.CaptureFixture) -> None:
    line = one_line_error(lambda: evaluate_from_config(compose("eval", ["model=s3_tiny", override])), capsys)
    assert line.startswith(expected)


def test_a_full_or_read_only_output_folder_ends_the_job_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tmp_path / "davis", tmp_path / "run"
    make_davis(root, VIDEOS)
    args = ["model=s3_tiny", "dataset=synthetic", f"dataset.root={root}", f"output_dir={out}", "progress=false",
            "threads=1"]
    for code, hint in ((errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only file system")):
        def refuse(self: Image.Image, fp, *args, code=code, **kwargs) -> None:
            raise OSError(code, "refused by the test", str(fp))

        monkeypatch.setattr(Image.Image, "save", refuse)
        line = one_line_error(lambda: evaluate_from_config(compose("eval", [*args, "resume=false"])), capsys)
        assert line.startswith(f"error: {out / 'Annotations'}/") and hint in line


def test_input_warnings_print_one_line_through_the_handler(capsys: pytest.CaptureFixture) -> None:
    def job() -> int:
        warnings.warn(InputWarning("masks/clip/00000.png: mask size 20x12 resized nearest-neighbour"))
        return 3

    assert run_job(job) == 3
    assert capsys.readouterr().err == "warning: masks/clip/00000.png: mask size 20x12 resized nearest-neighbour\n"
