"""STMA through every job, in-process as the scripts run them: the registry, the model table
(scripts/model_summary.py), the benchmark (scripts/benchmark.py), training with the STMA recipes
(scripts/train.py), evaluation (scripts/eval.py) and the quickstart (scripts/quickstart.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from s3.config import ConfigError, compose, load_model_config
from s3.config.jobs import QuickstartConfig
from s3.config.synthetic import SplitSizes, SyntheticConfig
from s3.config.train import to_train_config
from s3.data.build import build_train_dataset
from s3.data.synthetic import generate_dataset
from s3.run import load_processor
from s3.run.architectures import ARCHITECTURES, architecture, build_model
from s3.run.benchmark import benchmark_from_config
from s3.run.cli import run_job
from s3.run.evaluate import evaluate_from_config
from s3.run.model_table import model_table, model_table_from_config
from s3.run.quickstart import is_model_override, quickstart_from_args
from s3.run.train import train_from_config
from s3.stma.network import STMANetwork
from s3.stma.processor import STMAVideoProcessor
from s3.train.checkpoint import weights_path
from s3.train.trainer import stage_data_config

pytestmark = pytest.mark.usefixtures("one_thread")

CONVVIT_B = 84_455_296  # ConvMAE's ConvViT-B encoder without its fixed 14x14 position table (150,528)


SMALL_SYNTHETIC = ["++synthetic.num_videos.train=2", "++synthetic.num_videos.val=2", "++synthetic.num_frames=[8,8]",
                   "++synthetic.frame_size=[96,128]"]  # the quickstart's overrides for the set below


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a very small synthetic DAVIS-layout set (2 train, 2 val videos of 8 frames)."""
    root = tmp_path_factory.mktemp("data")
    config = SyntheticConfig(num_videos=SplitSizes(train=2, val=2), num_frames=[8, 8], frame_size=[96, 128])
    generate_dataset(root / "synthetic", config, progress=False)
    return root


def test_stma_models_resolve_to_the_stma_architecture(one_thread: None) -> None:
    cfg = load_model_config("stma_tiny")
    assert architecture(cfg) is ARCHITECTURES["stma"] and isinstance(build_model(cfg), STMANetwork)
    engine = load_processor("stma_tiny", device="cpu")
    assert isinstance(engine, STMAVideoProcessor) and not engine.network.training


def test_the_model_table_counts_the_convvit_b_encoder() -> None:
    """stma_convvitb's table on a small probe: the encoder row is ConvMAE's ConvViT-B less its
    position table (a fixed buffer here), and every module shows its output shapes."""
    torch.manual_seed(0)
    cfg = load_model_config("stma_convvitb")
    network = STMANetwork(cfg).eval()
    table = model_table(network, cfg, (64, 96), num_objects=2)
    rows = {r.name: r for r in table.rows}
    assert rows["pixel_encoder"].trainable == CONVVIT_B and table.frozen == 0
    assert table.trainable == sum(p.numel() for p in network.parameters())
    assert rows["pixel_encoder"].output_shapes == ["(1, 24, 768)", "(1, 384, 8, 12)", "(1, 256, 16, 24)"]
    assert all(r.output_shapes for r in table.rows)  # every module runs in the engine


def test_model_summary_and_benchmark_jobs_run_stma() -> None:
    model_cfg, table = model_table_from_config(
        compose("model_summary", ["model=stma_tiny", "frame_size=[64,96]", "num_objects=3", "threads=1"])
    )
    rows = {r.name: r for r in table.rows}
    assert model_cfg.name == "stma_tiny" and rows["object_tokenizer"].output_shapes == ["(1, 3, 96)"]
    result = benchmark_from_config(compose("benchmark", [
        "model=stma_tiny", "size=64", "aspect=1.5", "repeats=2", "warmup=1", "threads=1", "precisions=[fp32,bf16]",
        "gemm_probe=false", "profile=true",
    ]))
    assert result.model == "stma_tiny" and [len(run.seconds) for run in result.runs] == [2, 2]
    assert all(s > 0 for run in result.runs for s in run.seconds)


@pytest.mark.parametrize(
    "recipe, stages",
    [
        ("stma", [("main", 160000, [0.625], None)]),
        ("stma_static", [("static", 150000, [], None), ("main", 160000, [0.625], None)]),
        ("stma_bl30k", [("static", 150000, [], None), ("bl30k", 250000, [0.8], ["bl30k"]), ("main", 160000, [0.625], None)]),
    ],
)
def test_the_paper_recipes(recipe: str, stages: list) -> None:
    composed = compose("train", [f"recipe={recipe}", "data=davis_ytvos"])
    assert composed.model.name == "stma_convvitb"  # the recipe's model unless model= says otherwise
    cfg = to_train_config(composed.train)
    assert [(s.name, s.num_iterations, s.optim.lr_step_fractions) for s in cfg.stages] == [st[:3] for st in stages]
    for stage, (_, _, _, used) in zip(cfg.stages, stages):
        data = stage_data_config(composed.data, stage)
        assert (stage.batch_size, stage.num_ref_frames, stage.optim.lr, stage.optim.weight_decay) == (16, 2, 3e-5, 0.05)
        assert (stage.optim.backbone_lr_ratio, stage.optim.clip_grad_norm) == (1.0, 3.0)
        assert (stage.loss.kind, stage.loss.ce_weight, stage.loss.dice_weight) == ("bootstrap", 0.5, 0.5)
        assert (stage.loss.bootstrap_start_warm, stage.loss.bootstrap_end_warm, stage.loss.bootstrap_top_p) == (
            20000, 70000, 0.15)
        assert data.static.enabled == (stage.name == "static") and data.use_datasets == used
        if stage.name != "static":
            assert (data.seq_length, data.crop_size, data.max_objects) == (5, 384, 3)
            assert stage.max_skip_schedule == [10, 15, 5, 5]
    if recipe == "stma_bl30k":
        bl30k = stage_data_config(composed.data, cfg.stages[1]).datasets["bl30k"]
        assert (bl30k.reader, Path(bl30k.root).name) == ("folder", "BL30K")
    assert compose("train", ["model=stma_tiny", f"recipe={recipe}"]).model.name == "stma_tiny"


def test_a_stage_trains_on_the_datasets_it_names(synthetic: Path) -> None:
    composed = compose("train", ["model=stma_tiny", "recipe=stma_quickstart", "data=synthetic", f"data.root={synthetic}",
                                 "+data.datasets.copy={reader: davis, root: " + str(synthetic / "synthetic") + "}"])
    data = stage_data_config(composed.data, to_train_config(composed.train).stages[0])
    assert [d.name for d in build_train_dataset(data, 3, 0).datasets] == ["synthetic", "copy"]
    only = stage_data_config(composed.data, to_train_config(composed.train).stages[0])
    only.use_datasets = ["copy"]
    assert [d.name for d in build_train_dataset(only, 3, 0).datasets] == ["copy"]
    with pytest.raises(ConfigError, match=r"data.use_datasets=\['bl30k'\] must name some of data.datasets"):
        stage_data_config(composed.data, to_train_config(
            compose("train", ["model=stma_tiny", "recipe=stma_quickstart", "+train.stages.0.data={use_datasets: [bl30k]}"]).train
        ).stages[0])


def test_train_and_eval_jobs_run_stma(synthetic: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train_from_config(compose("train", [
        "model=stma_tiny", "recipe=stma_quickstart", "data=synthetic", f"data.root={synthetic}", f"train.run_dir={run_dir}",
        "train.stages.0.num_iterations=2", "train.stages.0.batch_size=2", "data.crop_size=64", "train.num_workers=0",
        "train.threads=1", "train.device=cpu",
    ]))
    weights = weights_path(run_dir, "main")
    assert any(k.startswith("object_tokenizer.") for k in torch.load(weights, weights_only=True))
    report, prints = evaluate_from_config(compose("eval", [
        "model=stma_tiny", "dataset=synthetic", f"dataset.root={synthetic / 'synthetic'}", f"weights={weights}",
        f"output_dir={tmp_path / 'eval'}", "threads=1", "progress=false", "mem_every=2",
    ]))
    assert prints and report.frames == 16 and report.global_metrics is not None
    assert len(list((tmp_path / "eval" / "Annotations").rglob("*.png"))) == 16


def test_the_quickstart_picks_the_model_and_its_recipe(synthetic: Path, tmp_path: Path) -> None:
    assert QuickstartConfig().recipe == "quickstart" and QuickstartConfig(model="stma_tiny").recipe == "stma_quickstart"
    assert compose("quickstart").output_dir.endswith("/quickstart")  # S3's folder is unchanged
    assert compose("quickstart", ["model=stma_tiny"]).output_dir.endswith("/stma_quickstart")
    assert [is_model_override(a) for a in ["model.key_dim=8", "+model.x=1", "model/stma_backbone=x", "models=2"]] == [
        True, True, True, False]
    report = quickstart_from_args([
        "model=stma_tiny", "model.spatial_memory_size=2", f"data_root={synthetic}", f"output_dir={tmp_path}",
        "iterations=2", "threads=1", "visualize=false", *SMALL_SYNTHETIC,
    ])
    assert report.model == "stma_tiny" and 0.0 <= report.model_jf <= 1.0
    assert "J&F on the synthetic val videos: stma_tiny" in report.format()
    run_config = OmegaConf.load(tmp_path / "train" / "config.yaml")  # the model override reached training
    assert (run_config.model.name, run_config.model.spatial_memory_size, run_config.recipe.name) == (
        "stma_tiny", 2, "stma_quickstart")
    with pytest.raises(SystemExit):
        run_job(lambda: quickstart_from_args(["model=stma_vitb", f"output_dir={tmp_path}"]))
