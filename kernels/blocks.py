"""Layout helpers shared by the codecs: position-major views, bit packing, scratch buffers.

Layout convention: a chunk of rows is viewed as groups (blocks or sub-blocks) and
*transposed* to ``[positions_in_group, n_groups]`` ("position-major"). A loop over
the 16 or 32 positions of a group then touches one contiguous vector of all groups
per step, which is how sequential in-group sums stay in C's order while every op
still works on the whole chunk.

This module imports nothing from kernels.
"""
from __future__ import annotations

from typing import Sequence

import torch


def positions_major(x: torch.Tensor, n: int) -> torch.Tensor:
    """float [rows, k*n] -> contiguous [n, rows*k]: column g holds group g's n weights.

    kernels.fused.positions_major is the same transpose compiled (faster on big CPU tensors).
    """
    return x.reshape(-1, n).t().contiguous()


def imatrix_per_block(imatrix: torch.Tensor, rows: int, block: int = 256) -> torch.Tensor:
    """imatrix [n] -> [rows * n/block, block]: the importance of every weight of every block.

    C indexes ``quant_weights + block*i`` with i the block inside the row, so the same
    vector applies to every row.
    """
    n = imatrix.shape[0]
    return imatrix.view(1, n).expand(rows, n).reshape(-1, block)


def codes_to_blocks(Lt: torch.Tensor, nb: int) -> torch.Tensor:
    """Position-major codes [n, nb*256/n] (small non-negative ints) -> uint8 [nb, 256]."""
    return Lt.to(torch.uint8).t().reshape(nb, 256)


def pack_nibbles(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """uint8 ``(lo & 0xF) | (hi & 0xF) << 4`` elementwise."""
    return (lo & 0x0F) | ((hi & 0x0F) << 4)


def bits_to_bytes_le(bits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pack 0/1 uint8 tensors ``bits[k]`` ([...] each, k = bit number) into bytes [..., len(bits)//8].

    Bit k lands in byte k // 8 at position k % 8, i.e. a little-endian integer of
    len(bits) bits, as ``memcpy(&y.qh, &qh, sizeof qh)`` stores a uint32 on x86/ARM.
    """
    out = []
    for byte in range(len(bits) // 8):
        acc = bits[8 * byte].clone()
        for k in range(1, 8):
            acc |= bits[8 * byte + k] << k
        out.append(acc)
    return torch.stack(out, dim=-1)


def bit_planes(bits: torch.Tensor) -> torch.Tensor:
    """uint8 0/1 [nb, 8, k] -> uint8 [nb, k]: bit p of byte l = bits[:, p, l]."""
    out = bits[:, 0].clone()
    for p in range(1, bits.shape[1]):
        out |= bits[:, p] << p
    return out


# 2-bit code layout shared by Q2_K and Q3_K (their qs[64]): two chunks of 32 bytes, each
# covering 128 weights; byte l of chunk c holds weights 128c + l + 32k in bits 2k..2k+1:
#
#   qs[32c + l] = L[128c + l] | L[128c + 32 + l] << 2 | L[128c + 64 + l] << 4 | L[128c + 96 + l] << 6


def pack_2bit(L: torch.Tensor) -> torch.Tensor:
    """L uint8 [nb, 256] (0..3) -> uint8 [nb, 64]."""
    L = L.reshape(-1, 2, 4, 32)
    b = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return b.reshape(-1, 64)


def unpack_2bit(qs: torch.Tensor) -> torch.Tensor:
    """uint8 [nb, 64] -> int64 [nb, 256] (0..3)."""
    shifts = torch.tensor([0, 2, 4, 6], device=qs.device).view(1, 1, 4, 1)
    return ((qs.long().view(-1, 2, 1, 32) >> shifts) & 3).reshape(-1, 256)


class Workspace:
    """Named scratch buffers reused across the slices of one quantize call.

    Fresh multi-megabyte CPU tensors come from mmap and are page-faulted on
    first touch, which costs more than the arithmetic done in them; hot loops
    write their temporaries into these buffers instead (``out=`` / in-place).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._bufs: dict = {}

    def get(self, name: str, shape: "tuple[int, ...]", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= s
        buf = self._bufs.get((name, dtype))
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=self.device)
            self._bufs[(name, dtype)] = buf
        return buf[:numel].view(shape)
