"""How a stacked ensemble gets its members' gradients: the ``bmm`` and ``vmap`` backends.

``bmm`` (plain ``Flatten``/``Linear``/``ReLU`` stacks such as the library's ``mlp``) writes the
backward pass out with the very operations autograd runs for one member alone, so each
member's gradient equals its own ``loss.backward()`` (bit for bit on CPU at equal thread
counts); ``vmap`` (any other supported model) runs autograd through :func:`torch.func.vmap`.
:func:`~unlearnkit.audit.ensemble.train_ensemble` picks the backend and runs the optimizer
steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models import MLP


def _linear_chain(model: nn.Module) -> list[tuple[str, str]] | None:
    """The layers of a plain Flatten/Linear/ReLU stack as ``(kind, param prefix)``, else None.

    Only exact types whose forward is known are recognised (the library's ``MLP`` and plain
    ``nn.Sequential``); a subclass may override ``forward``.
    """
    ops: list[tuple[str, str]] = []

    def walk(mod: nn.Module, prefix: str) -> bool:
        kind = type(mod)
        if kind is nn.Sequential:
            return all(walk(child, f"{prefix}{name}.") for name, child in mod.named_children())
        if kind is nn.Flatten:
            if mod.start_dim != 1 or mod.end_dim != -1 or ops:
                return False
            ops.append(("flatten", prefix))
            return True
        if kind is nn.Linear:
            ops.append(("linear", prefix))
            return True
        if kind is nn.ReLU:
            ops.append(("relu", prefix))
            return True
        return False

    if type(model) is MLP:
        ok = walk(model.features, "features.") and walk(model.head, "head.")
    elif type(model) is nn.Sequential:
        ok = walk(model, "")
    else:
        ok = False
    if not ok or not any(kind == "linear" for kind, _ in ops):
        return None
    return ops


# Products of one linear layer for K stacked members, each written into ``out``: a batched
# kernel, and a loop over members that is the single-model computation itself. The operand
# layouts are autograd's for one member's ``F.linear`` on a 2-D batch: forward
# ``addmm(b, x, w.t())``, input gradient ``g.mm(w)``, weight gradient ``g.t().mm(x)``, bias
# gradient ``g.sum(0)``.
def _fwd_batched(out, x, w, b):
    if b is None:
        return torch.bmm(x, w.transpose(1, 2), out=out)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2), out=out)


def _fwd_loop(out, x, w, b):
    for k in range(x.shape[0]):
        if b is None:
            torch.mm(x[k], w[k].t(), out=out[k])
        else:
            torch.addmm(b[k], x[k], w[k].t(), out=out[k])
    return out


def _gx_loop(out, g, w):
    for k in range(g.shape[0]):
        torch.mm(g[k], w[k], out=out[k])
    return out


def _gw_loop(out, g, x):
    for k in range(g.shape[0]):
        torch.mm(g[k].t(), x[k], out=out[k])
    return out


def _gb_loop(out, g):
    for k in range(g.shape[0]):
        torch.sum(g[k], 0, out=out[k])
    return out


_PRODUCTS: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "forward": (_fwd_batched, _fwd_loop),
    "grad_x": (lambda out, g, w: torch.bmm(g, w, out=out), _gx_loop),
    "grad_w": (lambda out, g, x: torch.bmm(g.transpose(1, 2), x, out=out), _gw_loop),
    "grad_b": (lambda out, g: torch.sum(g, 1, out=out), _gb_loop),
}
_BATCHED, _LOOP = 0, 1


def _plan_products(
    k_count: int, fan_in: int, fan_out: int, bias: bool, batch: int, device: torch.device
) -> dict[str, int]:
    """Run each product of one layer shape batched and per member on random data; keep the
    batched kernel where it matches the single-model kernel bit for bit, else loop.

    Batched and single matrix products may take different kernels (on MKL, e.g., a weight
    gradient with 10 output rows does); a loop over members then keeps the equality exact.
    """
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).sub_(0.5).to(device)

    x, w, g = (
        rand(k_count, batch, fan_in),
        rand(k_count, fan_out, fan_in),
        rand(k_count, batch, fan_out),
    )
    b = rand(k_count, fan_out) if bias else None
    args = {"forward": (x, w, b), "grad_x": (g, w), "grad_w": (g, x), "grad_b": (g,)}
    shapes = {
        "forward": g.shape,
        "grad_x": x.shape,
        "grad_w": w.shape,
        "grad_b": (k_count, fan_out),
    }
    plan = {}
    for name, (batched, loop) in _PRODUCTS.items():
        with torch.no_grad():
            one = batched(torch.empty(shapes[name], device=device), *args[name])
            two = loop(torch.empty(shapes[name], device=device), *args[name])
        plan[name] = _BATCHED if torch.equal(one, two) else _LOOP
    return plan


class _StackedChain:
    """A Flatten/Linear/ReLU chain of K stacked members, with its backward written out.

    :meth:`grads` computes every member's batch-mean cross-entropy and writes each member's
    gradients into the stacked leaves' ``.grad`` with the operations autograd runs for one
    member alone (``log_softmax``, the NLL gradient ``-1/B`` at the targets,
    ``_log_softmax_backward_data``, ``threshold_backward`` for ReLU and the products of
    :data:`_PRODUCTS`), so member ``k``'s gradient equals its own ``loss.backward()`` bit for
    bit wherever a product's plan keeps the batched kernel (see :func:`_plan_products`). Doing
    without autograd saves its bookkeeping and every per-step allocation: activations and
    gradients live in buffers reused at every step of a batch size.
    """

    def __init__(
        self,
        ops: list[tuple[str, str]],
        leaves: dict[str, torch.Tensor],
        batch_sizes: set[int],
        k_count: int,
        device: torch.device,
    ) -> None:
        self.k, self.device = k_count, device
        self.input_relu = False
        # layers: (weight, bias or None, ReLU after it)
        self.layers: list[tuple[torch.Tensor, torch.Tensor | None, bool]] = []
        for kind, prefix in ops:
            if kind == "linear":
                self.layers.append((leaves[prefix + "weight"], leaves.get(prefix + "bias"), False))
            elif kind == "relu":
                if self.layers:
                    w, b, _ = self.layers[-1]
                    self.layers[-1] = (w, b, True)  # relu(relu(h)) == relu(h)
                else:
                    self.input_relu = True
        # The input gradient of layer i is needed when an earlier layer trains.
        trains = [w.requires_grad or (b is not None and b.requires_grad) for w, b, _ in self.layers]
        self.needs_gx = [any(trains[:i]) for i in range(len(self.layers))]
        for w, b, _ in self.layers:
            for leaf in (w, b):
                if leaf is not None and leaf.requires_grad:
                    leaf.grad = torch.zeros_like(leaf)
        self.plans = {
            (i, size): _plan_products(k_count, w.shape[2], w.shape[1], b is not None, size, device)
            for i, (w, b, _) in enumerate(self.layers)
            for size in batch_sizes
        }
        self.buffers: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def _buffers(self, size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if size not in self.buffers:
            outs = [
                torch.empty(self.k, size, w.shape[1], device=self.device) for w, _, _ in self.layers
            ]
            gins = [
                torch.empty(self.k, size, w.shape[2], device=self.device) if need else None
                for (w, _, _), need in zip(self.layers, self.needs_gx)
            ]
            self.buffers[size] = (outs, gins)
        return self.buffers[size]

    def grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Write the members' gradients for the batch ``x`` ``(K, B, ...)``, ``y`` ``(K, B)``
        into the leaves' ``.grad``; return the members' mean losses ``(K,)``."""
        k, size = x.shape[:2]
        outs, gins = self._buffers(size)
        h = x.reshape(k, size, -1)
        if self.input_relu:
            h = torch.relu(h)
        inputs = []
        with torch.no_grad():
            for i, (w, b, relu) in enumerate(self.layers):
                inputs.append(h)
                _PRODUCTS["forward"][self.plans[i, size]["forward"]](outs[i], h, w, b)
                if relu:
                    outs[i].clamp_min_(0)
                h = outs[i]
            classes = h.shape[-1]
            logp = torch.log_softmax(h.view(-1, classes), 1)
            target = y.reshape(-1, 1)
            losses = logp.gather(1, target).view(k, size).mean(1).neg_()
            # d(mean NLL)/d(log p) as nll_loss's backward writes it: -1/B at each target
            dlogp = torch.zeros_like(logp).scatter_(
                1, target, torch.ones((), device=self.device).div(size).neg().expand_as(target)
            )
            g = torch._log_softmax_backward_data(dlogp, logp, 1, logp.dtype).view(k, size, -1)
            for i in range(len(self.layers) - 1, -1, -1):
                w, b, relu = self.layers[i]
                plan = self.plans[i, size]
                if relu:
                    g = torch.ops.aten.threshold_backward(g, outs[i], 0)
                if w.requires_grad:
                    _PRODUCTS["grad_w"][plan["grad_w"]](w.grad, g, inputs[i])
                if b is not None and b.requires_grad:
                    _PRODUCTS["grad_b"][plan["grad_b"]](b.grad, g)
                if not self.needs_gx[i]:
                    break  # no earlier layer trains
                g = _PRODUCTS["grad_x"][plan["grad_x"]](gins[i], g, w)
        return losses


def _autograd_grads(forward: Callable[[torch.Tensor], torch.Tensor], k_count: int):
    """Gradients by autograd: the members' batch-mean losses are summed and differentiated
    (members share no parameters, so each slice of the gradient is its member's own)."""

    def grads(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = forward(x)
        per = (
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
            .view(k_count, -1)
            .mean(1)
        )
        params = forward.params  # type: ignore[attr-defined]
        for p in params:
            p.grad = None
        per.sum().backward()
        return per.detach()

    return grads


def _vmap_forward(
    base: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]
):
    def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor):
        return torch.func.functional_call(base, (p, b), (x,))

    batched = torch.func.vmap(one, in_dims=(0, 0, 0))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return batched(params, buffers, x)

    forward.params = list(params.values())  # type: ignore[attr-defined]
    return forward
