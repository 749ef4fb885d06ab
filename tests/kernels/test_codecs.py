"""kernels.codecs: every type of the geometry table has a codec, and each codec is its type's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels.codecs import CODECS
from kernels.types import TYPES


def test_every_type_has_a_codec_and_every_codec_a_type():
    assert list(CODECS) == list(TYPES)


@pytest.mark.parametrize("name", list(CODECS))
def test_each_codec_writes_its_types_block_size(name):
    """A row filled in wrongly (another type's functions) writes another byte count."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32))
    data = CODECS[name].quantize(x, None)
    assert tuple(data.shape) == (2, 512 // TYPES[name].block_size * TYPES[name].type_size)
    assert CODECS[name].dequantize(data, 512).shape == (2, 512)
