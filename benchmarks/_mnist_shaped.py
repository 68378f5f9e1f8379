"""The MNIST-shaped synthetic data several performance scripts measure on.

1x28x28 inputs, 10 classes, a test split one sixth of the training split (as MNIST's 60,000 /
10,000), no validation split; ``label_noise`` gives the models something to memorise.
"""

from __future__ import annotations

import unlearnkit as uk


def mnist_shaped(n_train: int, *, label_noise: float = 0.0, seed: int = 0):
    """A synthetic bundle of ``n_train`` training samples shaped like MNIST."""
    return uk.datasets.load(
        "synthetic",
        n_train=n_train,
        n_val=0,
        n_test=n_train // 6,
        num_classes=10,
        input_shape=(1, 28, 28),
        separation=0.15,
        label_noise=label_noise,
        seed=seed,
    )
