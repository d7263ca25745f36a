"""The one compiled part: baichuan/kernels/_gemv.c, the CPU decode products (see its header).

Plain C with intrinsics and OpenMP, no torch headers, so it builds in pip's isolated build without
torch. It is optional: where it cannot build (no C compiler, no OpenMP, not x86-64) the install
goes on and the model runs on torch's own kernels (baichuan/kernels/__init__.py says which)."""

import platform
import sys

from setuptools import Extension, setup

x86 = platform.machine().lower() in ("x86_64", "amd64")
ext = [Extension("baichuan.kernels._gemv", ["baichuan/kernels/_gemv.c"],
                 extra_compile_args=["-O3", "-fopenmp", "-std=c11"], extra_link_args=["-fopenmp"],
                 optional=True)] if x86 and sys.platform.startswith("linux") else []
setup(ext_modules=ext)
