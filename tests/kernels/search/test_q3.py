"""kernels.search.q3: the compiled twin of make_q3_quants refines exactly as C does."""
from __future__ import annotations

import numpy as np
import torch

from kernels import fused
from kernels.search import q3
from kernels.search.q3 import make_q3_quants


def test_q3_search_stops_where_c_stops_after_five_passes(monkeypatch):
    """make_q3_quants refines at most five passes; these Gaussian rows hold a group that
    would still change in a sixth. The round-based compiled search must stop there too,
    matching the eager search (itself checked against llama.cpp's bytes) code for code,
    and must differ from it when allowed more passes (so the rows do exercise the limit)."""
    fused.set_enabled(True)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1024, 4096)).astype(np.float32)[990:998])
    xt = x.reshape(-1, 16).t().contiguous()
    want_scale, _ = make_q3_quants(xt, 4)

    def compiled_search():
        mx, sumlx, suml2, exact = q3.q3_search(xt, x.reshape(-1, 16), 4)
        assert exact
        return torch.where(suml2 > 0, sumlx / suml2, 0.0)

    assert torch.equal(compiled_search(), want_scale)
    monkeypatch.setattr(q3, "Q3_PASSES", 20)
    # the same rounds uncompiled: recompiling the search for 20 passes costs minutes
    for name, fn in (("_q3_probe_c", q3._q3_start_and_probe), ("_q3_from_start_c", q3._q3_from_start),
                     ("_q3_more_c", q3._q3_more)):
        monkeypatch.setattr(q3, name, fn)
    assert not torch.equal(compiled_search(), want_scale)
