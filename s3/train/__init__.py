"""Training: the recurrent clip forward, losses, optimiser and schedule, distributed set-up,
checkpoints and resume, logging, and the iteration loop (:class:`s3.train.trainer.Trainer`)."""
