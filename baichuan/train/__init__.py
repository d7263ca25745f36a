"""Training: pretraining (pretrain.py) and what it is built from (optimizer and schedule,
parallelism applied from outside the model, complete resumable training state)."""
