"""Every registered method obeys the method contract on every new architecture (tiny sizes).

Methods that perturb inputs with continuous noise cannot run on token ids by design; on the
text models they must stop at once with a DataError saying so. The ResNets and VGG are the
slow part (dozens of conv/BatchNorm layers, each run several times per check): two cheap
methods on each run in the quick suite, the rest are marked ``slow``.
"""

from __future__ import annotations

import warnings

import pytest

import unlearnkit as uk
from unlearnkit.testing import check_method

TINY = {
    "resnet18": {"width": 4},
    "resnet50": {"width": 4},
    "vgg16_bn": {"width": 4},
    "wrn28_10": {"depth": 10, "widen": 1},
    "vit_tiny": {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32},
    "vit_small": {"dim": 16, "depth": 1, "heads": 4, "mlp_dim": 32},
    "embedding_bag": {"dim": 16},
    "text_transformer": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32},
}
HEAVY = {"resnet18", "resnet50", "vgg16_bn"}
QUICK_ON_HEAVY = {"finetune", "ssd"}
# Methods that add continuous noise to inputs or move them along gradients.
PERTURB_INPUTS = {"boundary_shrink", "jit", "natmu"}


def _cases():
    for arch in TINY:
        for method in uk.list_methods():
            slow = arch in HEAVY and method not in QUICK_ON_HEAVY
            marks = [pytest.mark.slow] if slow else []
            yield pytest.param(arch, method, marks=marks, id=f"{arch}-{method}")


def test_every_new_architecture_is_covered() -> None:
    new = set(uk.models.available()) - {"mlp", "cnn_small"}
    assert new == set(TINY)


@pytest.mark.parametrize("arch, method", list(_cases()))
def test_conformance_on_architecture(arch: str, method: str) -> None:
    with warnings.catch_warnings():
        # torch's vmap has no batching rule for embedding_bag yet (slower, still correct)
        warnings.filterwarnings("ignore", message="There is a performance drop")
        if uk.models.input_kind(arch) == "tokens" and method in PERTURB_INPUTS:
            with pytest.raises(uk.DataError, match="needs floating-point features"):
                check_method(method, arch=arch, arch_kwargs=TINY[arch])
            return
        check_method(method, arch=arch, arch_kwargs=TINY[arch])


@pytest.mark.parametrize("arch", ["text_transformer", "vit_tiny"])
def test_subclass_scenario_on_architecture(arch: str) -> None:
    """Fine labels reach the tiny image and text bundles of the architecture checks."""
    check_method("finetune", scenario="subclass", arch=arch, arch_kwargs=TINY[arch])


def test_check_method_refuses_bn_with_an_architecture() -> None:
    with pytest.raises(uk.ConfigError, match="leave it out with arch="):
        check_method("finetune", bn=True, arch="resnet18")
