"""Every fast path a user gets on a CPU, against the plain fp32 model: the same weights and tokens,
the logits of every position compared as ||fast - fp32|| / ||fp32||, with the tolerance stated
per precision (measured: fp32 compiled 2.4e-7, bf16 4.6e-3 to 6.5e-3, int8 6.6e-3 to 7.8e-3,
int4 g32 5.8e-2 to 6.0e-2 on these models; the bounds leave about 2x room)."""

import copy

import pytest
import torch

from baichuan.infer.cpu import decode_backend
from baichuan.quant import quantize, use_kernels
from test_model import small_model

TOLERANCE = {"fp32": 1e-5, "bf16": 1.5e-2, "int8": 1.5e-2, "int4": 1.2e-1}  # relative error of the logits


def fast_model(ref, precision: str):
    """The model as the CPU fast path runs it: bf16 activations, torch's int8/int4 kernels."""
    model = copy.deepcopy(ref)
    if precision in ("int8", "int4"):
        quantize(model, precision, 32)
    if precision != "fp32":
        model.to(torch.bfloat16)
    if precision in ("int8", "int4"):
        use_kernels(model)
    return model


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-13b"])  # RoPE; ALiBi with NormHead
@pytest.mark.parametrize("precision", list(TOLERANCE))
def test_fast_paths_stay_within_their_stated_tolerance_of_fp32(arch, precision):
    ref = small_model(arch)
    ids = torch.randint(0, ref.cfg.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    model = fast_model(ref, precision)
    with torch.no_grad():
        want = ref(ids)
        eager = model(ids).float()
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=decode_backend, dynamic=False)(ids).float()
    for how, got in (("eager", eager), ("compiled", compiled)):
        err = ((got - want).norm() / want.norm()).item()
        assert err < TOLERANCE[precision], f"{precision} {how}: relative error {err:.2e}"
    assert (compiled - eager).norm() / eager.norm() < TOLERANCE[precision] / 2  # the two fast paths agree
