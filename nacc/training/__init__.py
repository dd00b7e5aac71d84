"""Offline fitting (nothing here runs when coding): the neural predictors' training side
(torch: float models with fake quantization, the training loop, the exporter to the integer
model, training corpora) and the fit of cm's priors.

Modules:

* ``model``    -- torch models with fake quantization (QAT).
* ``train``    -- seeded, checkpointed, resumable training; exports at the end.
* ``export``   -- the one exporter: a trained torch model -> the weight packs of
  ``nacc.neural.packs`` (written to a model folder by ``nacc.neural.modelfile.save_model``).
* ``datasets`` -- training corpora: ``(name, tokens)`` segments from files and shards.
* ``cm_prior`` -- the fit of cm's shipped priors (code tree and warm state; numpy only).

Nothing on the coding path imports this package: the run-time side (config, packs, the
integer reference, the model loader) is ``nacc.neural``, which imports without torch.
"""
