"""`python -m baichuan.train` / `torchrun ... -m baichuan.train`: see pretrain.py."""

import sys

from baichuan.errors import BaichuanError
from baichuan.train.pretrain import main

try:
    main()
except BaichuanError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
