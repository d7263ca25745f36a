"""How the decode step runs fast on CUDA: CUDA graphs (torch.compile's "reduce-overhead"), each
replaying the step over all `max_batch` rows at fixed addresses, a graph per span (fastpath.py).
The cache, lengths, last tokens and sampler state are those addresses: the graphs read and write
them in place."""

from __future__ import annotations

import torch

from baichuan.infer.fastpath import DecodePath, normalize_head


def cuda_decode_path(model: torch.nn.Module) -> DecodePath:
    normalize_head(model)

    def compile(fn, buffers, options):
        for t in buffers:
            torch._dynamo.mark_static_address(t)
        # batch-1 matmuls become fused reductions (gpt-fast's setting), which reads int8 weights directly
        inductor = {"triton.cudagraphs": True, "coordinate_descent_tuning": True}
        return torch.compile(fn, **{**options, "options": {**options["options"], **inductor}})
    # one graph per span is by design: inductor warns only past that many (read when a graph is recorded)
    return DecodePath(compiled=True, all_rows=True, graph_spans=True, warm_calls=3, compile=compile,
                      inductor_options={"triton.cudagraph_dynamic_shape_warn_limit": 64})
