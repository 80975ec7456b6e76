"""Parameter groups, optimiser, LR schedule, and the recipes' training values."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from s3.config import ConfigError, compose, load_model_config, to_model_config
from s3.config.train import OptimizerConfig, TrainConfig, to_train_config
from s3.model.network import S3Network
from s3.train.optim import SUMMARY_TO_QUERY_WEIGHTS, build_optimizer, build_scheduler, parameter_groups


@pytest.fixture(scope="module")
def s3_vitb() -> S3Network:
    """The full-size network on the meta device: names and shapes only, built in a fraction of a second."""
    with torch.device("meta"):
        return S3Network(load_model_config("s3_vitb"))


def group_sizes(groups: list[dict]) -> dict[str, int]:
    return {g["name"]: sum(p.numel() for p in g["params"]) for g in groups}


def test_groups_reproduce_the_reference_grouping(s3_vitb: S3Network) -> None:
    """Group sizes measured on the authors' code with the same configuration."""
    groups = parameter_groups(s3_vitb, OptimizerConfig(lr=5e-5, weight_decay=0.001, backbone_lr_ratio=0.1))
    assert group_sizes(groups) == {"backbone": 22_179_360, "embedding": 135_168, "other": 31_727_614}
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert settings == {"backbone": (5e-6, 0.001), "embedding": (5e-5, 0.0), "other": (5e-5, 0.001)}
    embedding = next(g for g in groups if g["name"] == "embedding")["param_names"]
    assert sorted(embedding) == sorted(
        ["object_transformer.query_init.weight", "object_transformer.query_emb.weight", *SUMMARY_TO_QUERY_WEIGHTS]
    )


def test_every_trainable_parameter_is_in_exactly_one_group_and_the_vit_in_none(s3_vitb: S3Network) -> None:
    groups = parameter_groups(s3_vitb, OptimizerConfig())
    names = [n for g in groups for n in g["param_names"]]
    trainable = [n for n, p in s3_vitb.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable) and len(names) == len(set(names))
    assert not any(n.startswith("pixel_encoder.vit.") for n in names)
    backbone = next(g for g in groups if g["name"] == "backbone")["param_names"]
    assert all(n.startswith("pixel_encoder.") for n in backbone) and "pixel_encoder.level_embed" in backbone


def test_decaying_the_summary_to_query_weights_is_an_option(s3_vitb: S3Network) -> None:
    groups = parameter_groups(s3_vitb, OptimizerConfig(decay_summary_to_query=True))
    sizes = group_sizes(groups)
    assert sizes["embedding"] == 2 * 8 * 256  # the two query embedding tables only
    assert sizes["other"] == 31_727_614 + 2 * 256 * 256
    other = next(g for g in groups if g["name"] == "other")["param_names"]
    assert set(SUMMARY_TO_QUERY_WEIGHTS) <= set(other)


def test_adam_eps_follows_amp_unless_set() -> None:
    net = S3Network(load_model_config("s3_tiny"))
    assert build_optimizer(net, OptimizerConfig(), amp=True).param_groups[0]["eps"] == 1e-6
    assert build_optimizer(net, OptimizerConfig(), amp=False).param_groups[0]["eps"] == 1e-8
    assert build_optimizer(net, OptimizerConfig(adam_eps=1e-5), amp=True).param_groups[0]["eps"] == 1e-5


def learning_rates(cfg: OptimizerConfig, num_iterations: int) -> list[float]:
    """The 'other' group's lr used at each iteration of a stage."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"name": "other", "params": [param], "lr": cfg.lr}], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg, num_iterations)
    used = []
    for _ in range(num_iterations):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def test_step_schedule_steps_at_rounded_fractions_of_the_stage() -> None:
    cfg = OptimizerConfig(lr=1.0, lr_step_fractions=[0.8, 0.92], lr_gamma=0.1)
    assert cfg.milestones(125_000) == [100_000, 115_000]
    assert cfg.milestones(175_000) == [140_000, 161_000]
    assert OptimizerConfig(lr_step_fractions=[0.8, 0.942857142857]).milestones(175_000) == [140_000, 165_000]
    assert learning_rates(cfg, 10) == pytest.approx([1.0] * 8 + [0.1] + [0.01])
    constant = OptimizerConfig(lr=1.0, lr_schedule="constant", lr_step_fractions=[])
    assert learning_rates(constant, 5) == [1.0] * 5


def test_warmup_ramps_linearly_then_follows_the_steps() -> None:
    cfg = OptimizerConfig(lr=2.0, lr_step_fractions=[0.5], lr_gamma=0.1, warmup_iterations=4)
    assert learning_rates(cfg, 8) == pytest.approx([0.5, 1.0, 1.5, 2.0, 0.2, 0.2, 0.2, 0.2])
    long_warmup = OptimizerConfig(lr=1.0, lr_step_fractions=[0.5], lr_gamma=0.1, warmup_iterations=8)
    assert learning_rates(long_warmup, 6) == pytest.approx([0.125, 0.25, 0.375, 0.05, 0.0625, 0.075])
    with pytest.raises(ConfigError, match=r"^train\.stages\.0\.optim\.warmup_iterations must be >= 0, got -1$"):
        OptimizerConfig(warmup_iterations=-1).validate("train.stages.0.optim")


def test_cosine_schedule_falls_from_lr_to_zero_over_the_stage_after_its_warmup() -> None:
    cosine = OptimizerConfig(lr=2.0, lr_schedule="cosine", lr_step_fractions=[])
    expected = [1.0 + math.cos(math.pi * i / 8) for i in range(8)]  # 2 x (1 + cos) / 2
    assert learning_rates(cosine, 8) == pytest.approx(expected)
    warm = OptimizerConfig(lr=2.0, lr_schedule="cosine", lr_step_fractions=[], warmup_iterations=2)
    assert learning_rates(warm, 8) == pytest.approx([0.5 * expected[0], *expected[1:]])


@pytest.mark.parametrize(
    "override, message",
    [
        ({"lr_step_fractions": [0.9, 0.5]}, r"lr_step_fractions=\[0.9, 0.5\] must be strictly increasing"),
        ({"lr_schedule": "constant"}, r"lr_step_fractions=\[0.8, 0.92\] must be empty for lr_schedule=constant"),
        ({"lr_schedule": "cosine"}, r"lr_step_fractions=\[0.8, 0.92\] must be empty for lr_schedule=cosine"),
        ({"lr_schedule": "poly", "lr_step_fractions": []}, r"lr_schedule='poly' is not one of"),
        ({"lr": 0}, r"train.stages.0.optim.lr must be > 0"),
    ],
)
def test_bad_optimiser_settings_name_the_key(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        to_train_config({"stages": [{"optim": override}]})


def composed(*overrides: str) -> tuple:
    cfg = compose("train", list(overrides))
    return to_train_config(cfg.train), to_model_config(cfg.model)


def test_every_train_setting_is_a_key_of_the_train_config() -> None:
    # a TrainConfig field missing from configs/train.yaml could only be set with "+train.<key>"
    keys = set(compose("train", []).train.keys())
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= keys
    assert composed("train.compile=true")[0].compile
    # the train node is typed by TrainConfig, so a stage's keys its recipe leaves out take plain overrides
    stage = composed("recipe=quickstart", "train.stages.0.optim.warmup_iterations=20")[0].stages[0]
    assert (stage.optim.warmup_iterations, stage.optim.lr) == (20, 1e-3)


def main_stage_values(*overrides: str) -> tuple:
    train, model = composed(*overrides)
    main = train.stages[-1]
    optim = main.optim
    return (
        main.num_iterations,
        optim.milestones(main.num_iterations),
        optim.lr,
        optim.weight_decay,
        model.encoder.drop_path_rate,
        main.batch_size,
    )


def test_paper_recipe_is_table_a1() -> None:
    train, _ = composed()
    assert [s.name for s in train.stages] == ["main"]
    main = train.stages[0]
    assert (main.num_ref_frames, main.max_skip_schedule) == (3, [5, 10, 15, 5])
    assert main.max_skip_fractions == [0.0, 0.1, 0.3, 0.8]
    assert main_stage_values() == (150_000, [120_000, 138_000], 5e-5, 0.05, 0.15, 16)
    assert main_stage_values("data=mega") == (190_000, [152_000, 179_143], 5e-5, 0.05, 0.15, 16)
    assert main_stage_values("data=synthetic")[0] == 150_000  # any other mix: the DAVIS+YTVOS row


def test_reference_recipe_is_the_released_code() -> None:
    assert main_stage_values("recipe=reference") == (125_000, [100_000, 115_000], 5e-5, 0.001, 0.0, 16)
    assert main_stage_values("recipe=reference", "data=mega") == (175_000, [140_000, 165_000], 5e-5, 0.001, 0.0, 16)


def test_cutie_recipe_pretrains_on_static_images_first() -> None:
    train, model = composed("recipe=cutie")
    assert model.name == "cutie_base" and [s.name for s in train.stages] == ["pretraining", "main"]
    pre = train.stages[0]
    assert (pre.num_iterations, pre.precision, pre.num_ref_frames, pre.loss.num_points) == (80_000, "fp32", 2, 8192)
    assert (pre.optim.lr, pre.optim.lr_schedule, pre.data) == (1e-4, "constant", {"static": {"enabled": True}})
    assert main_stage_values("recipe=cutie") == (125_000, [100_000, 115_000], 1e-4, 0.001, 0.0, 16)
    assert main_stage_values("recipe=cutie", "data=mega")[:2] == (175_000, [140_000, 160_000])


def test_run_directory_follows_the_experiment() -> None:
    train, _ = composed("model=s3_tiny", "recipe=reference", "data=synthetic")
    assert (train.exp_id, train.run_dir) == ("s3_tiny_reference_synthetic", "runs/s3_tiny_reference_synthetic")
    train, _ = composed("train.exp_id=mine")
    assert train.run_dir == "runs/mine"
