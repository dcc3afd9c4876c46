"""Peak tensor memory of one call, on CUDA and on the CPU: what tools/benchmark.py and tools/train_memory.py report."""
import gc

import torch

__all__ = ['peak_memory_mib']


def peak_memory_mib(step, device) -> float:
    """Peak memory of one call of ``step`` above what was allocated before it, in MiB.

    CUDA: the caching allocator's max allocated. CPU: PyTorch's CPU allocator keeps no statistics and RSS depends on
    what glibc hands back to the OS, so the allocation records of the profiler are replayed in time order.
    """
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2 ** 20
