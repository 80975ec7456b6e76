"""The README's main job, with no download: synthetic videos -> train a tiny model -> evaluate -> J&F.

    python scripts/quickstart.py                    # s3_tiny, about 10 minutes on 2 CPU cores
    python scripts/quickstart.py model=stma_tiny    # STMA with its own quickstart recipe
    python scripts/quickstart.py iterations=2000    # longer training
Options: configs/quickstart.yaml (key=value overrides, as every script).
"""

from __future__ import annotations

import sys

from s3.run.cli import run_job
from s3.run.quickstart import quickstart_from_args

if __name__ == "__main__":
    print(run_job(lambda: quickstart_from_args(sys.argv[1:])).format())
