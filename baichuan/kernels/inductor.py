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
    from baichuan.kernels import _gemv
    try:
        from torch._inductor import ir
        from torch._inductor.lowering import register_lowering
        from torch._inductor.select_algorithm import extern_kernels
    except ImportError as e:
        warnings.warn(f"baichuan.kernels: compiled graphs call the ops through the dispatcher ({e})",
                      RuntimeWarning, stacklevel=2)
        return False

    def threads() -> int:
        return torch.get_num_threads()

    def f32(x, w, *, out):
        _gemv.set_threads(threads())
        _gemv.f32(x.data_ptr(), w.data_ptr(), out.data_ptr(), x.numel() // w.shape[1], w.shape[0], w.shape[1])

    def bf16(x, w, *, out):
        _gemv.set_threads(threads())
        _gemv.bf16(x.data_ptr(), w.data_ptr(), out.data_ptr(), 1, x.numel() // w.shape[1], w.shape[0], w.shape[1])

    def q8(x, w, scales, *, out):
        _gemv.set_threads(threads())
        _gemv.q8(x.data_ptr(), w.data_ptr(), scales.data_ptr(), out.data_ptr(), 1, x.numel() // w.shape[1],
                 w.shape[0], w.shape[1])

    def q4(x, w, scales, zeros, group, *, out):
        _gemv.set_threads(threads())
        k = x.shape[-1]
        _gemv.q4(x.data_ptr(), w.data_ptr(), scales.data_ptr(), zeros.data_ptr(), group, out.data_ptr(), 1,
                 x.numel() // k, w.shape[0], k)

    def q4_symmetric(x, w, scales, group, *, out):
        _gemv.set_threads(threads())
        k = x.shape[-1]
        _gemv.q4(x.data_ptr(), w.data_ptr(), scales.data_ptr(), 0, group, out.data_ptr(), 1, x.numel() // k,
                 w.shape[0], k)

    names = {}
    for fn in (f32, bf16, q8, q4, q4_symmetric):
        name = f"baichuan_gemv_{fn.__name__}"
        if not hasattr(extern_kernels, name):
            setattr(extern_kernels, name, fn)
        names[fn.__name__] = f"extern_kernels.{name}"

    def extern(name, x, *tensors, constants=()):
        x = ir.ExternKernel.require_contiguous(x)
        tensors = [ir.ExternKernel.require_contiguous(t) for t in tensors]
        size = [*x.get_size()[:-1], tensors[0].get_size()[0]]
        layout = ir.FixedLayout(x.get_device(), x.get_dtype(), size, ir.FlexibleLayout.contiguous_strides(size))
        return ir.TensorBox.create(ir.ExternKernelOut(layout=layout, inputs=[x, *tensors],
                                                      constant_args=tuple(constants), python_kernel_name=names[name]))

    ops = torch.ops.baichuan
    as_given = functools.partial(register_lowering, type_promotion_kind=None)  # the default casts to one dtype
    try:
        as_given(ops.gemv_f32.default)(lambda x, w: extern("f32", x, w))
        as_given(ops.gemv_bf16.default)(lambda x, w: extern("bf16", x, w))
        as_given(ops.gemv_q8.default)(lambda x, w, s: extern("q8", x, w, s))
        as_given(ops.gemv_q4.default)(
            lambda x, w, s, z, group: extern("q4", x, w, s, z, constants=(group,)) if z is not None
            else extern("q4_symmetric", x, w, s, constants=(group,)))
    except (AttributeError, TypeError, AssertionError) as e:
        warnings.warn(f"baichuan.kernels: compiled graphs call the ops through the dispatcher ({e})",
                      RuntimeWarning, stacklevel=2)
        return False
    return True


@functools.cache
def cache_key_pass():
    """A no-op post-grad pass whose uuid is the hash of these lowerings and the extension: set as
    inductor's `post_grad_custom_post_pass` while compiling, it enters inductor's cache key, which
    otherwise knows nothing of lowerings registered from outside (a graph cached before them would
    be served without them). None where this torch lacks the hook."""
    try:
        from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
        from baichuan.kernels import _gemv
    except ImportError:
        return None

    class Marker(CustomGraphPass):
        def __call__(self, graph):
            pass

        def uuid(self):
            return get_hash_for_files((__file__, _gemv.__file__))
    return Marker()
