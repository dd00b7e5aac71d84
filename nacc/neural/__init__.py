"""Neural predictors, run-time side: what the decoder needs, numpy and numba only (no torch).

Modules:

* ``config``    -- ``ModelConfig`` (saved as ``config.json``), size presets, spec constants.
* ``packs``     -- the weights as typed, named packs (NamedTuples; one per transformer layer):
  the one representation of an integer model, its field names the weight names.
* ``intref``    -- the integer inference spec (module docstring) and its numpy reference.
* ``modelfile`` -- model folders (``config.json`` + ``weights-<sha256[:16]>.npz``): the one
  writer and the one loader, with hash and bounds checking.
* ``synth``     -- synthetic token videos with a known law and their exact code length.

The training side (torch models, training, the exporter, corpora) is ``nacc.training``, and
its command ``nacc train`` is ``nacc.cli.train``; the
numba kernels of the spec live in ``nacc.kernels.cpu.neural`` and ``neural_lanes``, the
predictors ``transformer`` and ``lstm`` in ``nacc.predictors.neural``.
"""
