"""The learning rate a config's training follows, computed by mmengine's own Runner and ParamSchedulerHook without
data or a training step (``tools/vis_scheduler.py`` draws it; the config tests check the recipes with it)."""
from __future__ import annotations

__all__ = ['learning_rates']


def learning_rates(cfg, model, batch_size, iters_per_epoch, work_dir):
    """The optimizer mmengine's Runner builds from ``cfg`` for one process taking ``batch_size`` images a step (so
    ``auto_scale_lr`` scales for that batch), and {learning rate of a parameter group before scheduling: that
    group's learning rate at every training iteration}. ``iters_per_epoch`` matters for epoch-based loops only.

    Groups that start at the same rate follow the same curve, so the schedulers are stepped on a stand-in optimizer
    of the same type holding one group per distinct rate: hundreds of groups (one per parameter when norms and
    biases are spared weight decay) would otherwise make 300 ImageNet epochs take minutes."""
    import numpy as np
    import torch
    from mmengine.hooks import ParamSchedulerHook
    from mmengine.optim import OptimWrapper
    from mmengine.runner import IterBasedTrainLoop, Runner
    from torch.utils.data import DataLoader
    runner = Runner(model=model, work_dir=str(work_dir), default_scope=cfg.default_scope, log_level='ERROR',
                    train_dataloader=DataLoader(range(batch_size * iters_per_epoch), batch_size=batch_size),
                    train_cfg=cfg.train_cfg, optim_wrapper=cfg.optim_wrapper, param_scheduler=cfg.param_scheduler,
                    auto_scale_lr=cfg.get('auto_scale_lr'))
    # the first three steps of Runner.train(), in its order (scale_lr comes between the two builds)
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(wrapper, runner.auto_scale_lr)
    optimizer = wrapper.optimizer
    first_of_rate = {}
    for g in optimizer.param_groups:
        first_of_rate.setdefault(g['lr'], g)
    rates = sorted(first_of_rate, reverse=True)
    stand_in = type(optimizer)([dict({k: v for k, v in first_of_rate[r].items() if k != 'params'},
                                     params=[torch.zeros(1, requires_grad=True)]) for r in rates])
    runner.optim_wrapper = OptimWrapper(stand_in)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    hook, lrs = ParamSchedulerHook(), []
    by_iter = isinstance(runner.train_loop, IterBasedTrainLoop)
    for _ in range(1 if by_iter else runner.max_epochs):
        for i in range(runner.max_iters if by_iter else iters_per_epoch):
            lrs.append([g['lr'] for g in stand_in.param_groups])
            hook.after_train_iter(runner, i)
        hook.after_train_epoch(runner)
    lrs = np.array(lrs)
    return optimizer, {r: lrs[:, k] for k, r in enumerate(rates)}
