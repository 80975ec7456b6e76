"""Scoring predicted VOS masks: J, F, J&F with the DAVIS 2017 and vos-benchmark conventions.

Pure numpy / OpenCV / PIL: nothing here imports torch or the inference engine, so any method's
predictions can be scored on a machine without a GPU stack. The benchmark presets (which frames
to read, feed and save: ``datasets``), the submission writers (``submission``), overlays
(``visualize``), score-map ensembles (``ensemble``) and the HTML pages of a scored run (``report``)
and of several runs side by side (``compare``) live here too; running the network over a preset is
the evaluation job, ``s3.run.evaluate``.
"""

from s3.data.palette import MaskFileError, read_mask
from s3.eval.compare import write_comparison
from s3.eval.metrics import (
    FrameStatistics,
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    frame_statistics,
    object_scores,
    region_similarity,
)
from s3.eval.report import write_report
from s3.eval.run_results import RunResults, RunResultsError, load_run_results
from s3.eval.scoring import (
    GLOBAL_COLUMNS,
    PER_FRAME_COLUMNS,
    ObjectScores,
    ScoreTable,
    evaluate_sequences,
    score_davis,
    write_csvs,
)

__all__ = [
    "FrameStatistics",
    "GLOBAL_COLUMNS",
    "MaskFileError",
    "ObjectScores",
    "PER_FRAME_COLUMNS",
    "RunResults",
    "RunResultsError",
    "ScoreTable",
    "boundary_f_measure",
    "boundary_map",
    "boundary_radius",
    "evaluate_sequences",
    "frame_statistics",
    "load_run_results",
    "object_scores",
    "read_mask",
    "region_similarity",
    "score_davis",
    "write_comparison",
    "write_csvs",
    "write_report",
]
