"""The README's main job, with no download: synthetic videos -> train s3_tiny -> evaluate -> J&F.

    python scripts/quickstart.py                    # about 10 minutes on 2 CPU cores
    python scripts/quickstart.py iterations=2000    # longer training
Options: configs/quickstart.yaml (key=value overrides, as every script).
"""

from __future__ import annotations

import logging
import sys

from omegaconf import OmegaConf

from s3.config import ConfigError, compose
from s3.quickstart import run_quickstart, to_quickstart_config


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        node = compose("quickstart", argv)
        cfg = to_quickstart_config(OmegaConf.to_container(node, resolve=True))
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    report = run_quickstart(cfg)
    print(report.format())


if __name__ == "__main__":
    main(sys.argv[1:])
