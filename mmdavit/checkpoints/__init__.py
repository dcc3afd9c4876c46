"""How a checkpoint enters an OpenMMLab model: ``reader`` (the one gate, :func:`~reader.read_checkpoint`, the
:class:`~reader.Checkpoint` a tool converts for its task model, the hand-off to the task repos' loaders) and
``allow_list`` (the weights-only allow-list for mmengine's checkpoints, used as a context inside the readers)."""
