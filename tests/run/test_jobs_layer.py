"""The jobs layer's shared pieces: the architecture registry, one-call model loading, the process
runtime, the one-line error handler and the typed job configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s3.config import MODEL_SCHEMAS, ConfigError, compose, load_model_config, to_model_config
from s3.config.eval import to_eval_config
from s3.config.inference import InferenceConfig
from s3.config.jobs import ConvertConfig, ModelTableConfig, job_config
from s3.inference.processor import VideoProcessor
from s3.model.network import S3Network
from s3.model.weights import CheckpointError
from s3.run import load_model, load_processor
from s3.run.architectures import ARCHITECTURES, architecture, build_model
from s3.run.cli import run_job
from s3.run.runtime import process_runtime, select_device


def test_every_architecture_has_a_config_schema_and_back() -> None:
    assert sorted(ARCHITECTURES) == sorted(MODEL_SCHEMAS)
    cfg = load_model_config("s3_tiny")
    assert cfg.arch == "s3" and architecture(cfg) is ARCHITECTURES["s3"]
    with pytest.raises(ConfigError, match=r"model.arch='xmem' is not one of \['s3'"):
        to_model_config({"arch": "xmem"})


def test_load_model_builds_loads_and_sets_eval_mode(tmp_path: Path, one_thread: None) -> None:
    torch.manual_seed(3)
    source = build_model(load_model_config("s3_tiny"))
    weights = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), weights)
    network = load_model("s3_tiny", weights=str(weights), device="cpu")
    assert isinstance(network, S3Network) and not network.training
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), network.state_dict().values()))
    with pytest.raises(CheckpointError, match="model.weights: file not found"):
        load_model("s3_tiny", weights=str(tmp_path / "missing.pth"), device="cpu")


def test_load_processor_wraps_the_model_in_its_engine(tmp_path: Path, one_thread: None) -> None:
    processor = load_processor("s3_tiny", overrides=["model.query.num_queries=2"], settings=InferenceConfig(top_k=7),
                               device="cpu")
    assert isinstance(processor, VideoProcessor) and processor.config.top_k == 7
    assert processor.network.cfg.query.num_queries == 2
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[8:30, 8:30] = 3
    assert processor.step(torch.rand(3, 64, 64), mask).object_ids == [3]
    assert processor.step(torch.rand(3, 64, 64)).probabilities.shape == (2, 64, 64)


def test_process_runtime_restores_the_torch_settings() -> None:
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with process_runtime("cpu", threads=1, deterministic=True) as ctx:
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert (ctx.rank, ctx.world_size, ctx.device.type, ctx.is_main) == (0, 1, "cpu", True)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_a_job_that_keeps_torch_determinism_does_not_load_dynamo() -> None:
    # torch.use_deterministic_algorithms imports torch._dynamo (seconds) even when nothing changes
    code = (
        "import sys\n"
        "from s3.run.runtime import process_runtime\n"
        "with process_runtime('cpu', threads=1):\n"
        "    pass\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given on a machine without CUDA")
def test_asking_for_cuda_without_one_names_the_key() -> None:
    with pytest.raises(ConfigError, match="train.device=cuda: no CUDA device is available"):
        select_device("cuda", key="train.device")


def test_expected_failures_end_in_one_line_and_bugs_keep_their_traceback(capsys: pytest.CaptureFixture) -> None:
    def bad_setting() -> None:
        raise ConfigError("model.key_dim must be > 0, got 0\nsecond line")

    with pytest.raises(SystemExit) as exit_info:
        run_job(bad_setting)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: model.key_dim must be > 0, got 0\n"

    def bug() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_job(bug)


def test_job_configs_are_typed_and_name_their_keys() -> None:
    table = job_config(compose("model_summary", ["frame_size=[64,96]"]), ModelTableConfig, leave_out=("model",))
    assert table.frame_size == [64, 96] and table.num_objects == 2
    with pytest.raises(ConfigError, match=r"^num_objects: Value 'two' of type 'str' could not be converted"):
        job_config(compose("model_summary", ["num_objects=two"]), ModelTableConfig, leave_out=("model",))
    with pytest.raises(ConfigError, match="frame_size must be \\[H, W\\]"):
        job_config({"frame_size": [64]}, ModelTableConfig)
    with pytest.raises(ConfigError, match="^src: a value is required"):
        job_config(compose("convert_checkpoint"), ConvertConfig, leave_out=("model",))
    with pytest.raises(ConfigError, match="^drop_vti: unknown key"):
        job_config({"src": "a", "out": "b", "drop_vti": True}, ConvertConfig)


def test_the_protocol_owns_the_memory_schedule_of_an_evaluation() -> None:
    cfg = to_eval_config(compose("eval", ["dataset=davis17", "mem_every=3", "inference.top_k=12"]))
    settings = cfg.inference_config()
    assert (settings.mem_every, settings.top_k, settings.max_internal_size) == (3, 12, 480)
    with pytest.raises(ConfigError, match="inference.mem_every: set by the dataset preset's protocol; .* mem_every="):
        to_eval_config(compose("eval", ["+inference.mem_every=3"]))
