"""Parameter specs: mapping, validation, JSON."""
from __future__ import annotations

import json
import math

import pytest
import torch

import isp


def test_specs_are_consistent():
    assert isp.NUM_PARAMS == len(isp.PARAM_SPECS) == len(isp.PARAM_NAMES) == len(set(isp.PARAM_NAMES))
    for s in isp.PARAM_SPECS:
        assert s.low <= s.neutral <= s.high and s.low < s.high and s.description
    n = isp.neutral_params(3)
    assert n.shape == (3, isp.NUM_PARAMS)
    assert n[0].tolist() == pytest.approx([s.neutral for s in isp.PARAM_SPECS])


def test_unit_mapping_end_points_and_round_trip():
    P = isp.NUM_PARAMS
    assert torch.allclose(isp.unit_to_params(torch.zeros(P)), isp.neutral_params(1)[0])
    assert isp.unit_to_params(-torch.ones(P)).tolist() == pytest.approx([s.low for s in isp.PARAM_SPECS])
    assert isp.unit_to_params(torch.ones(P)).tolist() == pytest.approx([s.high for s in isp.PARAM_SPECS])
    g = torch.Generator().manual_seed(0)
    u = torch.rand(64, P, generator=g) * 2 - 1
    p = isp.unit_to_params(u)
    isp.validate_params(p)
    assert torch.allclose(isp.unit_to_params(isp.params_to_unit(p)), p, atol=1e-6)
    # where neutral lies strictly inside the range the map is a bijection
    inner = [i for i, s in enumerate(isp.PARAM_SPECS) if s.low < s.neutral < s.high]
    assert torch.allclose(isp.params_to_unit(p)[:, inner], u[:, inner], atol=1e-6)
    # a midpoint between neutral and high maps to 0.5
    s = isp.PARAM_SPECS[0]
    mid = isp.neutral_params(1)
    mid[0, 0] = (s.neutral + s.high) / 2
    assert isp.params_to_unit(mid)[0, 0].item() == pytest.approx(0.5)


def test_unit_mapping_is_differentiable():
    u = torch.full((2, isp.NUM_PARAMS), 0.3, requires_grad=True)
    isp.unit_to_params(u).sum().backward()
    assert torch.isfinite(u.grad).all() and (u.grad > 0).all()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_validate_rejects_non_finite(bad):
    p = isp.neutral_params(2)
    p[1, 3] = bad
    with pytest.raises(ValueError, match=isp.PARAM_NAMES[3]):
        isp.validate_params(p)


def test_validate_rejects_out_of_range_and_shape():
    p = isp.neutral_params(1)
    p[0, 0] = isp.PARAM_SPECS[0].high + 0.5
    with pytest.raises(ValueError, match="outside its range"):
        isp.validate_params(p)
    with pytest.raises(ValueError, match="last dimension"):
        isp.validate_params(torch.zeros(1, isp.NUM_PARAMS + 1))
    assert isp.validate_params(isp.neutral_params(4)) is not None


def test_json_round_trip(tmp_path):
    d = {"exposure": 0.5, "contrast": -0.25}
    p = isp.params_from_dict(d)
    out = isp.params_to_dict(p)
    assert out["exposure"] == 0.5 and out["contrast"] == -0.25
    assert out["saturation"] == isp.PARAM_SPECS[isp.PARAM_INDEX["saturation"]].neutral
    f = tmp_path / "p.json"
    f.write_text(json.dumps(out))
    assert torch.equal(isp.params_from_dict(json.loads(f.read_text())), p)
    with pytest.raises(ValueError, match="unknown"):
        isp.params_from_dict({"exposure": 0.1, "gamma_typo": 1.0})
    with pytest.raises(ValueError, match="number"):
        isp.params_from_dict({"exposure": "bright"})
    with pytest.raises(ValueError, match="outside"):
        isp.params_from_dict({"exposure": 99})
