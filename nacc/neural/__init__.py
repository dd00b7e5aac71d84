"""Neural predictors: training in float (torch, QAT), coding in integers.

Modules, in pipeline order:

* ``config``  -- ``ModelConfig`` (saved as ``config.json``) and size presets.
* ``model``   -- torch models with fake quantization (training only).
* ``train``   -- seeded, checkpointed, resumable training; exports at the end.
* ``export``  -- float -> integer model; model folders (``config.json`` +
  ``weights-<sha256[:16]>.npz``) with hash checking.
* ``intref``  -- the integer inference spec (module docstring) and its numpy reference.
* ``cli``     -- the ``nacc train`` command.
* ``datasets`` -- training corpora: ``(name, tokens)`` segments from files and shards.
* ``synth``   -- synthetic token videos with a known law and their exact code length.

The numba kernels of the same spec live in ``nacc.kernels.cpu.neural``; the predictors
``transformer`` and ``lstm`` in ``nacc.predictors.neural``.
"""
