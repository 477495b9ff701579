"""chatstack's int4 and int8 decode kernels and bf16 prompt GEMM for Intel AMX
(amx_kernels.cpp): built on first use where the CPU has AMX and a C++ compiler is installed;
PyTorch's kernels everywhere else.

PyTorch's `_weight_int4pack_mm_for_cpu` and `_weight_int8pack_mm` unpack the weights once
per row: on a 2-core Xeon with AMX, 30 layers' int4 linears took 4.2 ms for one row and
24 ms for 16, the int8 output projection 0.9 and 8.4 ms. Here the int4 linears take int8
inputs (per group of 32, as llama.cpp's Q4_1 dot products do) and sum exact integer products
with AVX512-VNNI for a few rows and AMX int8 tiles for more: 1.4 ms and 5.9 ms; the output
projection multiplies in AMX bf16 tiles: 1.2 and 1.7 ms (the .cpp has the arithmetic, in an
order that ignores the batch and the path). A prompt's rows go through the linears' bf16
copy in AMX tiles (PackedBF16), every output summed in one order whatever the rows, so that
prompts batch. Where AMX is missing an earlier design's AVX-512 equivalent was no faster
than PyTorch's, so there is none.

The source is compiled with the system's g++ into a cache folder keyed by its hash (~3 s,
once), and loaded with ctypes, which lets go of the GIL during a call. Its loops run on the
OpenMP runtime PyTorch has already loaded (the same `libgomp.so.1`), so they share
PyTorch's threads rather than start their own.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("amx_kernels.cpp")
# CPU flags of the instructions used: AMX tiles (bf16 and int8), vpdpbusd, vpermw,
# vcvtne2ps2bf16, vcvtph2ps.
REQUIRED_FLAGS = (
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "avx512f",
    "avx512_vnni",
    "avx512bw",
    "avx512vl",
    "avx512_bf16",
    "f16c",
    "fma",
)
COMPILE_FLAGS = (
    "-O3",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-fopenmp",
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512bf16",
    "-mavx512vnni",
    "-mf16c",
    "-mfma",
    "-mamx-tile",
    "-mamx-bf16",
    "-mamx-int8",
    # Every multiply and add as written: the int4 kernel's two paths must round alike.
    "-ffp-contract=off",
)
GROUP, LANES = 32, 16  # inputs per int4 scale, outputs per block (the kernels')
POINTER, SIZE = ctypes.c_void_p, ctypes.c_int64


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(cpuinfo) as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def cache_dir() -> Path:
    """Where built kernels are kept: $CHATSTACK_CACHE_DIR, else ~/.cache/chatstack, else
    the temp folder (a container's user may have no writable home)."""
    configured = os.environ.get("CHATSTACK_CACHE_DIR")
    if configured:
        return Path(configured)
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if os.access(home if home.exists() else home.parent, os.W_OK):
        return home / "chatstack"
    return Path(tempfile.gettempdir()) / f"chatstack-{os.getuid()}"


def build() -> Path | None:
    """Compile the kernels if they are not in the cache yet (the CPU need not have AMX: the
    image build runs this); the built library, or None (logged) without a compiler."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        log.warning("int4/int8 kernels: PyTorch's (no C++ compiler: install g++, ~2x at C=16)")
        return None
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(COMPILE_FLAGS).encode()).hexdigest()[:16]
    built = cache_dir() / f"amx_kernels-{digest}.so"
    if built.exists():
        return built
    partial = built.with_suffix(f".{os.getpid()}.tmp")
    try:
        built.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [compiler, *COMPILE_FLAGS, str(SOURCE), "-o", str(partial)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise OSError(done.stderr[-500:])
        os.replace(partial, built)  # atomic: workers building at once all succeed
    except OSError as exc:  # an unwritable cache folder, a broken compiler
        log.warning("int4/int8 kernels: PyTorch's (the build in %s failed: %s)", built.parent, exc)
        return None
    return built


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built kernels, or None (logged once, with why) where they cannot run here."""
    missing = [flag for flag in REQUIRED_FLAGS if flag not in cpu_flags()]
    if missing:
        log.info("int4/int8 kernels: PyTorch's (the CPU lacks %s)", ", ".join(missing))
        return None
    built = build()
    if built is None:
        return None
    lib = ctypes.CDLL(str(built))
    lib.chatstack_amx_available.restype = ctypes.c_int
    if not lib.chatstack_amx_available():
        log.warning("int4/int8 kernels: PyTorch's (Linux refused this process AMX tiles)")
        return None
    lib.chatstack_int4_mm.restype = lib.chatstack_int8_mm.restype = None
    lib.chatstack_int4_mm.argtypes = [
        *(POINTER, SIZE, SIZE, POINTER, POINTER, POINTER, SIZE, POINTER),
        *(POINTER, ctypes.c_float, ctypes.c_int),
    ]
    lib.chatstack_int8_mm.argtypes = [POINTER, SIZE, SIZE, POINTER, POINTER, SIZE, POINTER]
    lib.chatstack_bf16_mm.restype = None
    lib.chatstack_bf16_mm.argtypes = [
        *(POINTER, SIZE, SIZE, POINTER, SIZE, POINTER, POINTER, ctypes.c_float, ctypes.c_int)
    ]
    lib.chatstack_decode_attend.restype = None
    lib.chatstack_decode_attend.argtypes = [
        *(POINTER, SIZE, POINTER, POINTER, POINTER, POINTER, POINTER, SIZE, SIZE),
        *(SIZE, SIZE, SIZE, ctypes.c_float, POINTER),
    ]
    lib.chatstack_decode_attention.restype = None
    lib.chatstack_decode_attention.argtypes = [
        *(POINTER, SIZE, POINTER, POINTER, SIZE, SIZE, POINTER),
        *(SIZE, SIZE, SIZE, SIZE, ctypes.c_float, POINTER),
    ]
    log.info("int4/int8 kernels: chatstack's, on AMX (%s)", built)
    return lib


def _int4_by_block(nibbles: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 [out, in] → the int4 kernel's bytes [blocks, groups, 4, lanes, 4]: for
    inputs 4r+i of a group the low nibble, for inputs 16+4r+i the high one."""
    out_features, in_features = nibbles.shape
    q = nibbles.to(torch.uint8).reshape(
        out_features // LANES, LANES, in_features // GROUP, 2, 4, 4
    )  # [block, lane, group, half, r, i]
    return (q[:, :, :, 0] | (q[:, :, :, 1] << 4)).permute(0, 2, 3, 1, 4).contiguous()


def _pairs_by_block(nibbles: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 [out, in] → the kernels' bytes [blocks, groups, pairs, lanes]."""
    out_features, in_features = nibbles.shape
    q = nibbles.to(torch.uint8).reshape(
        out_features // LANES, LANES, in_features // GROUP, GROUP // 2, 2
    )
    return (q[..., 0] | (q[..., 1] << 4)).permute(0, 2, 3, 1).contiguous()


def _shape_fits(weight: torch.Tensor) -> bool:
    out_features, in_features = weight.shape
    return out_features % LANES == 0 and in_features % (2 * GROUP) == 0  # groups in pairs


class _FusedKernel:
    """A weight packed for a kernel called (x, rows, in, *weights, out, y, norm, eps, add):
    the int4 and bf16 ones, which fuse the RMSNorm before and the residual add after."""

    in_features: int
    out_features: int
    _fn: Any
    _weights: tuple[torch.Tensor, ...]

    def mm(
        self,
        rows: torch.Tensor,
        norm: tuple[torch.Tensor, float] | None = None,
        into: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[n, in] (any float dtype) → [n, out] float32.

        norm: (weight [in] float32, eps): RMS-normalize each row first, in the kernel.
        into: a contiguous float32 [n, out] that the product is added to and that is returned
        (the residual stream), instead of a new tensor.
        """
        rows = rows.float().contiguous()
        out = torch.empty((rows.shape[0], self.out_features)) if into is None else into
        weight, eps = norm if norm is not None else (None, 0.0)
        self._fn(
            rows.data_ptr(),
            rows.shape[0],
            self.in_features,
            *(w.data_ptr() for w in self._weights),
            self.out_features,
            out.data_ptr(),
            None if weight is None else weight.data_ptr(),
            eps,
            into is not None,
        )
        return out


class PackedInt4(_FusedKernel):
    """A Q4_1-style weight (codes 0..15, a step and a low per group of 32) in the kernel's
    layout; `mm` multiplies rows with it."""

    def __init__(self, codes: torch.Tensor, steps: torch.Tensor, lows: torch.Tensor) -> None:
        self.out_features, self.in_features = codes.shape
        self.codes = _int4_by_block(codes)
        blocks, groups = self.out_features // LANES, self.in_features // GROUP

        def per_block(values: torch.Tensor) -> torch.Tensor:
            return values.reshape(blocks, LANES, groups).transpose(1, 2).contiguous().half()

        self.steps, self.lows = per_block(steps), per_block(lows)
        self._weights = (self.codes, self.steps, self.lows)
        lib = library()
        assert lib is not None
        self._fn = lib.chatstack_int4_mm

    @staticmethod
    def fits(codes: torch.Tensor, steps: torch.Tensor, lows: torch.Tensor) -> bool:
        """Whether the kernel takes this weight exactly: whole blocks and float16 scales (a
        Q4_1 GGUF's are float16, so the embedded model's always are)."""
        return _shape_fits(codes) and all(
            torch.equal(v.half().float(), v.float()) for v in (steps, lows)
        )


class PackedBF16(_FusedKernel):
    """A dense weight in bf16, in the kernel's tile layout, for a prompt's many rows."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.out_features, self.in_features = weight.shape
        w = (
            weight.detach()
            .to(torch.bfloat16)
            .reshape(self.out_features // LANES, LANES, self.in_features // GROUP, GROUP // 2, 2)
        )  # [block, lane, step, pair, half]
        self.weight = w.permute(0, 2, 3, 1, 4).contiguous()
        self._weights = (self.weight,)
        lib = library()
        assert lib is not None
        self._fn = lib.chatstack_bf16_mm

    @staticmethod
    def fits(weight: torch.Tensor) -> bool:
        out_features, in_features = weight.shape
        return out_features % (2 * LANES) == 0 and in_features % GROUP == 0

    def dense(self) -> torch.Tensor:
        """The weight back as a plain [out, in] bf16 tensor (a view would not be contiguous)."""
        return self.weight.permute(0, 3, 1, 2, 4).reshape(self.out_features, self.in_features)


class PackedInt8:
    """An int8 weight with a float32 scale per output (the output projection) in the
    kernel's layout: each code c as two nibbles, c = 16 * (h - 8) + l."""

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor) -> None:
        self.out_features, self.in_features = codes.shape
        c = codes.to(torch.int16)
        low, high = _pairs_by_block(c & 15), _pairs_by_block((c >> 4) + 8)
        # [blocks, groups, plane, pairs, lanes]: a group's two planes side by side
        self.planes = torch.stack([low, high], dim=2).contiguous()
        self.scales = scales.float().contiguous()
        lib = library()
        assert lib is not None
        self._fn = lib.chatstack_int8_mm

    fits = staticmethod(_shape_fits)

    def mm(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, in] (any float dtype) → [n, out] float32."""
        rows = rows.float().contiguous()
        out = torch.empty((rows.shape[0], self.out_features))
        self._fn(
            rows.data_ptr(),
            rows.shape[0],
            self.in_features,
            self.planes.data_ptr(),
            self.scales.data_ptr(),
            self.out_features,
            out.data_ptr(),
        )
        return out


if __name__ == "__main__":  # `python -m model_api.amx_kernels`: build now (the image does)
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(0 if build() is not None else 1)
