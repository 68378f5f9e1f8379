"""Deletion requests on a user's own model: :func:`unlearnkit.forget` and ``unlearnkit forget``.

``inputs`` reads the user's data and forget list, ``model_io`` their model and checkpoint,
``calibrate`` searches each method's hyperparameters against a target that needs no retrained
model, ``request`` runs a request end to end, ``evidence`` and ``report`` record and present it.
"""
