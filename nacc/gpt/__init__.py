"""commaVQ's world model (a GPT-2, ``gpt2m``) imported and run in exact integers.

* ``intref``: the integer spec (its module docstring) and the numpy reference: weight
  packs, tables, the window pass and the KV-cache step (one code path for both);
* ``checkpoint``: reading a checkpoint in the Hugging Face GPT-2 layout, tensor by tensor;
* ``torchfile``: the tensors of a ``torch.save`` zip file, read without torch;
* ``importer``: float checkpoint -> integer model folder (deterministic bytes);
* ``source``: a submission's model rebuilt from its public checkpoint (path or URL) and
  checked against the archive's model hash;
* ``modelfile``: the model folder (``config.json`` + one raw weights file, content-hashed);
* ``policy``: the context policy (windows of frames, stride), shared by encoder and decoder;
* ``torch_ref``: the float32 reference model of the published architecture (training side,
  imports torch; nothing at coding time imports it).
"""
