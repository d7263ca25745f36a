"""Inductor lowerings for the baichuan.kernels ops: a compiled graph calls the extension directly.

Through the dispatcher, each op call costs about 13 us of Python on this project's 2-core VM (the
dispatcher's Python kernel, an output allocated with torch.empty) around a C call of about 3 us;
a decode step of the 168M model makes 161 of them, 2 ms a token. Lowered here, inductor allocates
the output with its own buffers and its wrapper calls a plain function with the tensors' addresses.

This uses inductor internals (`register_lowering`, `ExternKernelOut`, the `extern_kernels`
namespace its wrappers import); where a torch release lacks one, `lower()` returns False and
compiled graphs keep calling the ops through the dispatcher.
"""

from __future__ import annotations

import functools
import warnings

import torch


@functools.cache
def lower() -> bool:
    """Register the lowerings once; whether they are in place."""
    from baichuan import kernels
    if not kernels.available():
        return False
    try:
        from torch._inductor import ir
        from torch._inductor.lowering import register_lowering
        from torch._inductor.select_algorithm import extern_kernels
    except ImportError as e:
        warnings.warn(f"baichuan.kernels: compiled graphs call the ops through the dispatcher ({e})",
                      RuntimeWarning, stacklevel=2)
        return False

    def q4_symmetric_out(x, w, scales, group, *, out):  # no zeros tensor to pass as an input
        kernels.q4_out(x, w, scales, None, group, out=out)

    def attend_unmasked_out(q, k, v, scale, *, out):
        kernels.attend_out(q, k, v, None, scale, out=out)

    names = {}
    for name, fn in (("gemv_f32", kernels.f32_out), ("gemv_bf16", kernels.bf16_out), ("gemv_q8", kernels.q8_out),
                     ("gemv_q4", kernels.q4_out), ("gemv_q4_symmetric", q4_symmetric_out),
                     ("attend", kernels.attend_out), ("attend_unmasked", attend_unmasked_out)):
        setattr(extern_kernels, f"baichuan_{name}", fn)
        names[name] = f"extern_kernels.baichuan_{name}"

    def extern(name, x, *tensors, constants=()):  # a product: [..., in] x [out, ...] -> [..., out]
        x = ir.ExternKernel.require_contiguous(x)
        tensors = [ir.ExternKernel.require_contiguous(t) for t in tensors]
        size = [*x.get_size()[:-1], tensors[0].get_size()[0]]
        layout = ir.FixedLayout(x.get_device(), x.get_dtype(), size, ir.FlexibleLayout.contiguous_strides(size))
        return ir.TensorBox.create(ir.ExternKernelOut(layout=layout, inputs=[x, *tensors],
                                                      constant_args=tuple(constants), python_kernel_name=names[f"gemv_{name}"]))

    def attend(q, k, v, mask, scale):
        q = ir.ExternKernel.require_contiguous(q)
        # k and v: views of the cache, as they are (each dim's stride in order, the last 1)
        k, v = (ir.ExternKernel.require_stride_order(t, [3, 2, 1, 0]) for t in (k, v))
        size = list(q.get_size())
        layout = ir.FixedLayout(q.get_device(), q.get_dtype(), size, ir.FlexibleLayout.contiguous_strides(size))
        inputs = [q, k, v] if mask is None else [q, k, v, ir.ExternKernel.require_contiguous(mask)]
        return ir.TensorBox.create(ir.ExternKernelOut(
            layout=layout, inputs=inputs, constant_args=(scale,),
            python_kernel_name=names["attend" if mask is not None else "attend_unmasked"]))

    ops = torch.ops.baichuan
    as_given = functools.partial(register_lowering, type_promotion_kind=None)  # the default casts to one dtype
    try:
        as_given(ops.gemv_f32.default)(lambda x, w: extern("f32", x, w))
        as_given(ops.gemv_bf16.default)(lambda x, w: extern("bf16", x, w))
        as_given(ops.gemv_q8.default)(lambda x, w, s: extern("q8", x, w, s))
        as_given(ops.gemv_q4.default)(
            lambda x, w, s, z, group: extern("q4", x, w, s, z, constants=(group,)) if z is not None
            else extern("q4_symmetric", x, w, s, constants=(group,)))
        as_given(ops.attend.default)(attend)
    except (AttributeError, TypeError, AssertionError) as e:
        warnings.warn(f"baichuan.kernels: compiled graphs call the ops through the dispatcher ({e})",
                      RuntimeWarning, stacklevel=2)
        return False
    return True


@functools.cache
def cache_key_pass():
    """A no-op post-grad pass whose uuid is the hash of these lowerings and the kernels: set as
    inductor's `post_grad_custom_post_pass` while compiling, it enters inductor's cache key, which
    otherwise knows nothing of lowerings registered from outside (a graph cached before them would
    be served without them). None where this torch lacks the hook."""
    try:
        from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
        from baichuan import kernels
        from baichuan.kernels import _gemv
    except ImportError:
        return None

    class Marker(CustomGraphPass):
        def __call__(self, graph):
            pass

        def uuid(self):
            return get_hash_for_files((__file__, kernels.__file__, _gemv.__file__))
    return Marker()
