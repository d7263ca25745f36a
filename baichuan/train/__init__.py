"""Training: one trainer for pretraining, SFT and DPO (pretrain.py's `train`, which calls setup.py,
resume.py, loop.py and export.py in turn) and what it is built from (settings, the task's data and
objective, optimizer and schedule, parallelism applied from outside the model, complete resumable
training state, LoRA, metrics)."""
