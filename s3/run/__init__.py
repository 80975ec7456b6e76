"""Jobs: the top floor of the package, one module per job (train, evaluate, quickstart, model
table, benchmark, convert, datasets, scores), the process runtime they share, the registry of
architectures, and one-call model loading (``load_model``, ``load_processor``). Every script in
``scripts/`` is a one-call shell over a function here; nothing else in ``s3`` imports this package.
"""

from s3.run.models import load_model, load_processor

__all__ = ["load_model", "load_processor"]
