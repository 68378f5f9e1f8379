"""SSD and LFSSD against numbers computed by the reference implementation.

Golden values: ``ParameterPerturber.calc_importance`` and ``modify_weight`` of
if-loops/selective-synaptic-dampening ``src/ssd.py`` at commit
cdfdc0e35c1908e032a6e150d882b0fa17833f85, run unmodified on CPU on the tiny model and data
below, with ``D_tr`` built as that repository's ``src/forget_full_class_main.py`` builds it:
the retain samples grouped by class, then the forget class, concatenated and batched
unshuffled (batch 4; the last short batch kept). LFSSD: the same run with the importance change
given in that repository's README (squared logit norm, absolute gradients). Parameters are
flattened in ``named_parameters`` order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.data import DataView, DataViews
from unlearnkit.methods import RunContext
from unlearnkit.methods.ssd import (
    LFSSDConfig,
    SSDConfig,
    compute_importances,
    dtr_order,
    lfssd,
    ssd,
)

# Stored order of the 14 training labels (3 classes); class 1 is forgotten.
_Y = [2, 0, 1, 1, 2, 0, 0, 2, 1, 0, 2, 1, 0, 2]
_FORGET_CLASS, _BATCH = 1, 4
# D_tr as the reference batches it: class 0, class 2 (stored order within each), then D_f.
_REFERENCE_ORDER = [1, 5, 6, 9, 12, 0, 4, 7, 10, 13, 2, 3, 8, 11]

# fmt: off
_SSD_I_D = [
    0.251633108, 0.309060127, 0.0648102164, 0.0309652872, 0.0218674634, 0.0215848926, 0.100244246,
    0.0648280308, 0.071027182, 0.125053898, 0.237503991, 0.0544363335, 0.303206325, 0.402915984,
    0.0784016252, 0.238802314, 0.0357892178, 0.0838363916, 0.14217484, 0.287345618, 0.159533978,
    0.52989924, 0.0571074784, 0.0579941534, 0.0509569272, 0.163774192, 0.479808956, 0.128171071,
    0.0516078509, 0.0513752773, 0.0273102168, 0.199698836, 0.246703178, 0.0080926111,
    0.0229666475, 0.198229879, 0.202495575, 0.172412708,
]
_SSD_I_F = [
    0.457428664, 0.686721087, 0.0542843603, 0.0374426469, 0.0348613523, 0.00876297522,
    3.26482113e-05, 0.0100727025, 0.00352928229, 0.225948244, 0.648894548, 0.00196949206,
    0.65140003, 0.97516793, 0.0777188092, 0.456751198, 0.0513424501, 0.00498427637, 0.324487954,
    0.649460196, 0.257792115, 0.986815572, 0.0325926729, 0.0692416206, 0.0873468518, 0.30823794,
    1.20840049, 0.0402492806, 0.0824299976, 0.108035855, 0.00225239969, 0.0112120099,
    0.000403521321, 0.000574475853, 0.00109846331, 0.333183765, 0.40670839, 0.003662206,
]
_SSD_THETA = [
    0, 0.231945112, 0.788359821, 0.690567553, 0.267990559, -0.280626595, -0.697260559,
    -0.785962045, -0.505013406, 0.0134508926, 0.192372635, 0.790534556, 0.318231314, 0.105475217,
    -0.293183446, 0.673176765, 0.793331861, 0.540370464, 0.0145749329, -0.216567144, 0.727437913,
    0.341903895, -0.204432964, -0.654621661, -0.796931684, -0.564432263, -0.0263933223,
    0.462751865, 0.774335742, 0.343214542, 0.329694808, -0.217408344, -0.662261009, -0.795642138,
    -0.554820001, 0.112896003, -0.211039633, -0.761281669,
]
_LFSSD_I_D = [
    0.484194666, 0.539482236, 0.405988872, 0.593425214, 0.489070475, 0.398609459, 1.00413048,
    1.15873098, 1.06451988, 0.669457316, 0.459583282, 0.502931356, 0.882880569, 0.253909945,
    0.888049424, 0.421401352, 0.724025607, 1.44653153, 0.539801657, 0.613867521, 1.1544168,
    0.840012908, 0.0766885877, 0.714182317, 0.216034383, 0.569885612, 0.303449214, 0.411733866,
    0.367984742, 0.0713954121, 2.50261164, 4.16747522, 2.82553005, 1.43921733, 1.29346085,
    0.730469108, 0.414842784, 3.5625577,
]
_LFSSD_I_F = [
    0.0634436309, 0.316456527, 0.232746392, 0.893635809, 0.768328667, 0.482582539, 0.0697122365,
    1.2244817, 0.724807203, 0.317988873, 0.507175088, 0.0466516316, 0.54046005, 0.137683183,
    0.466799289, 0.107220307, 1.09784532, 0.861351371, 0.36281544, 0.313111871, 1.16097021,
    1.72435164, 0.0612853616, 0.621780157, 0.498788655, 0.53677392, 0.475402445, 0.473057359,
    0.296182036, 0.153226703, 2.21036768, 5.55746174, 2.28586268, 1.10905051, 1.615538,
    0.926204443, 0.138851687, 3.55065775,
]
_LFSSD_THETA = [
    0, 0.515374124, 0.788359821, 0.458576322, 0.170586199, -0.280626595, -0.697260559,
    -0.785962045, -0.505013406, 0.0134508926, 0.525589287, 0.790534556, 0.683679283, 0.255279154,
    -0.293183446, 0.673176765, 0.523199916, 0.540370464, 0.0332646072, -0.489486277, 0.727437913,
    0.166557491, -0.204432964, -0.654621661, -0.345165521, -0.564432263, -0.0424288474,
    0.462751865, 0.774335742, 0.336291015, 0.329694808, -0.217408344, -0.662261009, -0.795642138,
    -0.554820001, 0.112896003, -0.423868954, -0.761281669,
]
# fmt: on


def _model() -> nn.Module:
    m = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        for k, p in enumerate(m.parameters()):
            t = torch.arange(p.numel(), dtype=torch.float32) * 0.7 + k
            p.copy_(0.8 * torch.sin(t).reshape(p.shape))
    return m


def _views() -> tuple[DataView, DataView]:
    n = len(_Y)
    x = torch.cos(torch.arange(n * 3, dtype=torch.float32) * 1.3).reshape(n, 3) * 1.5
    full = DataView("train_full", x, torch.tensor(_Y), indices=np.arange(n))
    fgt = full.subset(np.flatnonzero(np.array(_Y) == _FORGET_CLASS))
    fgt.name = "forget"
    return full, fgt


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().flatten() for t in tensors])


def _close(got: torch.Tensor, golden: list[float]) -> bool:
    return torch.allclose(got, torch.tensor(golden), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "alpha", "golden"),
    [
        ("ssd", 2.0, (_SSD_I_D, _SSD_I_F, _SSD_THETA, 9)),
        ("lfssd", 1.5, (_LFSSD_I_D, _LFSSD_I_F, _LFSSD_THETA, 7)),
    ],
)
def test_matches_the_reference_on_its_own_batch_order(name: str, alpha: float, golden) -> None:
    i_d_ref, i_f_ref, theta_ref, selected_ref = golden
    full, fgt = _views()
    order = dtr_order(full, fgt, "ssd_reference")
    assert order.tolist() == _REFERENCE_ORDER
    label_free = name == "lfssd"
    model = _model()
    i_d = compute_importances(model, full, _BATCH, label_free=label_free, order=order)
    i_f = compute_importances(model, fgt, _BATCH, label_free=label_free)
    assert _close(_flat(i_d.values()), i_d_ref)
    assert _close(_flat(i_f.values()), i_f_ref)
    # Batched in stored order instead, I_D is not the reference's.
    assert not _close(
        _flat(compute_importances(model, full, _BATCH, label_free=label_free).values()), i_d_ref
    )

    cfg_cls = LFSSDConfig if label_free else SSDConfig
    cfg = cfg_cls(
        selection_weighting=alpha,
        dampening_constant=1.0,
        importance_batch_size=_BATCH,
        importance_order="ssd_reference",
    )
    ctx = RunContext(
        model=model,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        seed=0,
        num_classes=3,
        input_shape=(3,),
        scenario="class",
    )
    (lfssd if label_free else ssd)(model, DataViews(forget=fgt, train_full=full), cfg, ctx=ctx)
    assert ctx.info["selected_weights"] == selected_ref
    assert _close(_flat(model.parameters()), theta_ref)
