"""What keeps a training run safe to kill: ``checkpoint_hook`` (atomic checkpoints, RNG state for exact resumes),
``atomic_io``, ``rng``, ``resume`` (the newest complete checkpoint), ``schedule`` and ``memory`` (their small
helpers)."""
