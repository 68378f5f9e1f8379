"""NatMU's blended pixels: truncation as in the reference, rounding and no quantisation."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.datasets import Normalization
from unlearnkit.errors import ConfigError
from unlearnkit.methods.natmu import NatMUConfig, blend_hybrids, natmu_masks

CIFAR100_NORM = Normalization(
    raw_range=(0.0, 255.0),
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    quantized=True,
)


def tiny_uint8_problem():
    """2 forget and 8 retain 3x32x32 uint8 images, each retain image used once."""
    g = torch.Generator().manual_seed(0)
    xf = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.int64).to(torch.uint8)
    xr = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.int64).to(torch.uint8)
    partners = torch.tensor([[5, 2, 7, 0], [1, 6, 3, 4]])
    return xf, xr, partners


def raw_hybrids(delta: float, quantize, norm: Normalization = CIFAR100_NORM) -> torch.Tensor:
    xf, xr, partners = tiny_uint8_problem()
    masks = natmu_masks(32, 32, delta, 4)[:, None].expand(4, 3, 32, 32)
    h = blend_hybrids(
        norm.to_model(xf.float()),
        norm.to_model(xr.float()),
        partners,
        masks,
        normalization=norm,
        quantize=quantize,
    )
    return norm.to_raw(h, round_=True).to(torch.int64)


# Golden values: the reference's mask builder (generate_mask_cifar in
# sample-wise/utils/generate_patch_data.py) and its blending lines in get_dataloader of
# sample-wise/natmu.py, github.com/ZhengbaoHe/NatMU at commit
# f7b977eda29637261669b79607b58cac699c0948, run on tiny_uint8_problem()'s images and partners
# (masks tiled, forget images repeated 4 times, float32 blend, clip, astype(uint8)).
REFERENCE = {
    -0.053: {
        "total": 3119185,
        "per_hybrid": [390872, 382452, 389008, 391190, 394327, 391667, 388247, 391422],
        "h1_c0_rows0to7_col5": [95, 186, 61, 164, 133, 115, 101, 149],
        "h6_c2_row20_cols0to7": [60, 53, 59, 195, 79, 116, 59, 89],
    },
    0.0: {
        "total": 3118637,
        "per_hybrid": [390421, 382183, 388798, 390742, 394570, 391790, 388663, 391470],
        "h1_c0_rows0to7_col5": [106, 178, 69, 165, 131, 120, 99, 147],
        "h6_c2_row20_cols0to7": [69, 54, 62, 197, 75, 121, 62, 91],
    },
}


@pytest.mark.parametrize("delta", [-0.053, 0.0])
@pytest.mark.parametrize(
    "norm", [CIFAR100_NORM, Normalization(raw_range=(0.0, 255.0), quantized=True)]
)
def test_truncation_matches_the_reference_pixels(delta: float, norm: Normalization) -> None:
    raw = raw_hybrids(delta, "truncate", norm)
    ref = REFERENCE[delta]
    assert int(raw.sum()) == ref["total"]
    assert raw.reshape(8, -1).sum(1).tolist() == ref["per_hybrid"]
    assert raw[1, 0, :8, 5].tolist() == ref["h1_c0_rows0to7_col5"]
    assert raw[6, 2, 20, :8].tolist() == ref["h6_c2_row20_cols0to7"]


def test_truncation_is_the_default() -> None:
    assert NatMUConfig().quantize == "truncate"
    assert torch.equal(raw_hybrids(-0.053, NatMUConfig().quantize), raw_hybrids(-0.053, "truncate"))


def test_truncate_rounds_down_round_rounds_to_nearest() -> None:
    norm = Normalization(raw_range=(0.0, 16.0), quantized=True)
    xf = norm.to_model(torch.tensor([[[[16.0, 3.0, 16.0]]]]))  # one (1, 1, 3) forget input
    xr = norm.to_model(torch.tensor([[[[0.0, 8.0, 0.0]]]]))
    masks = torch.tensor([[[[0.7, 0.26, 0.8]]]])  # exact blends 11.2, 6.7, 12.8
    got = {
        mode: norm.to_raw(
            blend_hybrids(xf, xr, torch.tensor([[0]]), masks, normalization=norm, quantize=mode),
            round_=False,
        ).flatten()
        for mode in ("truncate", "round", "none")
    }
    assert got["none"].tolist() == pytest.approx([11.2, 6.7, 12.8], abs=1e-4)
    assert got["truncate"].tolist() == pytest.approx([11.0, 6.0, 12.0], abs=1e-4)
    assert got["round"].tolist() == pytest.approx([11.0, 7.0, 13.0], abs=1e-4)


def test_truncate_is_at_most_one_below_round_on_real_images() -> None:
    trunc, rnd = raw_hybrids(-0.053, "truncate"), raw_hybrids(-0.053, "round")
    diff = rnd - trunc
    assert int(diff.min()) == 0 and int(diff.max()) == 1
    assert int((diff == 1).sum()) > 0.3 * diff.numel()  # about half the pixels round up


def test_no_quantisation_without_integer_raw_data() -> None:
    g = torch.Generator().manual_seed(1)
    xf, xr = torch.randn(2, 1, 4, 4, generator=g), torch.randn(4, 1, 4, 4, generator=g)
    masks = natmu_masks(4, 4, 0.0, 2)[:, None]
    partners = torch.tensor([[0, 1], [2, 3]])
    exact = blend_hybrids(xf, xr, partners, masks, quantize="none")
    for norm in (None, Normalization(raw_range=(0.0, 1.0))):
        for mode in ("truncate", "round"):
            got = blend_hybrids(xf, xr, partners, masks, normalization=norm, quantize=mode)
            assert torch.equal(got, exact)


def test_quantize_config_values() -> None:
    assert NatMUConfig(quantize=True).quantize == "round"  # the boolean's former meaning
    assert NatMUConfig(quantize=False).quantize == "none"
    assert NatMUConfig.from_dict({"quantize": "round"}).quantize == "round"
    assert NatMUConfig.from_dict({"quantize": False}).quantize == "none"
    assert NatMUConfig.from_dict({"quantize": "True"}).quantize == "round"  # --set overrides
    with pytest.raises(ConfigError, match="quantize must be one of"):
        NatMUConfig(quantize="floor")
