"""Typed schema of ``configs/score.yaml``: scoring predictions against DAVIS 2017 ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from s3.config.validation import ConfigError, check_choice

# davis: davis2017-evaluation's semi-supervised J&F; vos_benchmark: any ids, 255 an object, late objects
SCORING_MODES = ("davis", "vos_benchmark")


@dataclass
class ScoreConfig:
    """What ``scripts/score.py`` scores, how, and where the CSVs go."""

    davis_root: Optional[str] = None  # DAVIS 2017 folder holding ImageSets/2017/ and Annotations/480p/
    subset: str = "val"  # split file ImageSets/2017/<subset>.txt; also names the CSVs
    results: Optional[str] = None  # predictions: <results>/<sequence>/<frame>.png
    out: Optional[str] = None  # folder for the CSVs; None = the results folder (as the official tool)
    mode: str = "davis"  # davis (davis2017-evaluation) | vos_benchmark (any ids, 255 an object, late objects)
    workers: int = 0  # processes over sequences; 0 = one per CPU core, 1 = in-process
    ignore_void: bool = False  # davis: drop 255 pixels from J and F (the official tool counts them as background)
    progress: bool = True  # progress bar on stderr
    report: bool = True  # also write report.html and the per-frame CSV beside the CSVs

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, key: str = "score") -> None:
        if not self.davis_root:
            raise ConfigError(f"{key}.davis_root is required: the DAVIS 2017 folder with ImageSets/ and Annotations/")
        if not self.results:
            raise ConfigError(f"{key}.results is required: the folder of predicted <sequence>/<frame>.png masks")
        if not self.subset:
            raise ConfigError(f"{key}.subset must name a split file of ImageSets/2017/ (e.g. val)")
        check_choice(f"{key}.mode", self.mode, SCORING_MODES)
        if self.workers < 0:
            raise ConfigError(f"{key}.workers must be >= 0 (0 = one per CPU core), got {self.workers}")
        if self.ignore_void and self.mode != "davis":
            raise ConfigError(f"{key}.ignore_void applies to mode=davis only (vos_benchmark scores 255 as an object)")
