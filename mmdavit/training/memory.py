"""Memory of one whole training step of a config's model (forward, losses, backward, optimizer step), so that a user
can tell which GPU a recipe needs before renting one. Measured on any device by ``davit_backbone.memory`` (on the
CPU by replaying the profiler's allocation records), after one warm-up step: the optimizer's states exist then, as
in the steady state of a run."""
from __future__ import annotations

from typing import Dict

import torch

from davit_backbone.memory import peak_memory_mib

__all__ = ['random_batch', 'training_step_memory']


def random_batch(scope: str, height: int, width: int, batch: int, num_classes: int, objects: int = 8) -> dict:
    """A batch as the task's data preprocessor takes it, random: detection with ``objects`` boxes and masks per
    image (mmdet's own ``demo_mm_inputs``), segmentation with random labels, classification with random labels."""
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch, [[3, height, width]] * batch, num_items=[objects] * batch,
                              num_classes=num_classes, with_mask=True)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8) for _ in range(batch)]
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(batch):
            s = SegDataSample(metainfo=dict(img_shape=(height, width), pad_shape=(height, width),
                                            ori_shape=(height, width)))
            s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, height, width)))
            samples.append(s)
        return dict(inputs=images, data_samples=samples)
    from mmpretrain.structures import DataSample
    return dict(inputs=images, data_samples=[DataSample().set_gt_label(int(torch.randint(num_classes, ())))
                                             for _ in range(batch)])


def training_step_memory(model, optim_wrapper, data: dict, device: torch.device) -> Dict[str, float]:
    """MiB held by the weights, by the optimizer's states and, at the peak of one more training step, by gradients
    and activations; ``total`` is their sum (the tensors a GPU must hold, before its context and allocator slack)."""
    def step():
        model.train_step(data, optim_wrapper)

    step()  # warm-up: the optimizer's states are created by its first step
    peak = peak_memory_mib(step, device)
    mib = 2 ** 20
    weights = sum(t.numel() * t.element_size() for t in model.parameters()) / mib
    states = sum(t.numel() * t.element_size() for s in optim_wrapper.optimizer.state.values() for t in s.values()
                 if torch.is_tensor(t)) / mib
    return dict(weights=weights, optimizer_states=states, step_peak=peak, total=weights + states + peak)
