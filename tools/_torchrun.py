"""torchrun as dist_train.sh and dist_test.sh start it: ``python tools/_torchrun.py [torchrun args] SCRIPT ...``.

The same ``torch.distributed.run``, except for how it ends when something fails, where torchrun raises and prints a
traceback of its own frames (ChildFailedError's some 30 lines after a worker's one line, burying it; a C++ stack of
frames when the nodes never meet):

- a worker failed: the launcher ends with that worker's exit code (2 stays "bad input"), the worker's own lines say
  why; one that died from a signal has said nothing, so one line names the rank and what to do;
- the nodes did not meet within the rendezvous timeout (a node not started, different MASTER_ADDR, PORT or NNODES, a
  closed port): one line and exit code 2, as for the launchers' other bad input.

torchrun's own log lines (``failed (exitcode: N) local_rank: ...``) are left as they are.
"""
import sys
import traceback

import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main, parse_args


def _rendezvous_line(argv, e: BaseException) -> str:
    args = parse_args(argv)
    conf = dict(kv.split('=', 1) for kv in args.rdzv_conf.split(',') if '=' in kv)
    nnodes, node, where = args.nnodes, args.node_rank, f'{args.master_addr}:{args.master_port}'
    cause = str(e).strip().splitlines()[0]
    if node == 0:
        why = f'node 0 hosts the rendezvous at {where}, but not all {nnodes} nodes joined'
    else:
        why = f'node {node} could not join the rendezvous at {where} (node 0 hosts it)'
    return (f'error: {why} within {conf.get("timeout", "the")} s ({cause}). Start dist_train.sh on every node with '
            f'the same NNODES, MASTER_ADDR (node 0\'s address) and PORT, open to the other nodes, and NODE_RANK '
            f'0..NNODES-1; RDZV_TIMEOUT sets how long a node waits for the others')


def _run(argv) -> int:
    try:
        main(argv)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode > 0:  # the worker said why itself
            return failure.exitcode
        print(f'error: rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) of {e.name} was killed by '
              f'{failure.signal_name()}: out of memory (see dmesg) or stopped from outside; start the run again on '
              'every node (tools/train.py: with --resume)', file=sys.stderr)
        return 1
    except dist.DistError as e:
        if not any('rendezvous' in frame.name for frame in traceback.extract_tb(e.__traceback__)):
            raise
        # the agents' rendezvous through the TCP store: no worker started
        print(_rendezvous_line(argv, e), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(_run(sys.argv[1:]))
