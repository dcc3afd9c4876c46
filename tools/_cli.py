"""What every script in tools/ shares (imported as ``_cli``: a script's own folder is on ``sys.path``): the common
options, the two kinds of one-line error and the exit codes they give (2: bad input, nothing written; 1: a rank lost
mid-run), and the quiet log. Config handling is in ``_config``, the distributed path in ``_dist``; how checkpoints are
read and checked is library code (``mmdavit.checkpoints.reader``). Nothing here is library API."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import _env

_env.require('torch', 'mmengine', 'mmdavit')

# setuptools 80 warns each time mmengine, mmcv or openmim import pkg_resources (five times a run): nothing a user of
# these tools can act on, and it buried the first lines of every log. requirements/build.txt pins setuptools<81,
# under which pkg_resources still exists.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

import torch.distributed as dist  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

# short_cause: for the tools' messages
from mmdavit.checkpoints.reader import CheckpointError, short_cause  # noqa: E402,F401
from mmdavit.training.resume import ResumeError  # noqa: E402
from mmdavit.data.unreadable_images import UnreadableImagesError  # noqa: E402

# what `train.py --validate-only` prints on stdout for the launchers: the checkpoint every rank resumes from
RESUME_LINE = 'resume-from: '
# set by the launchers after their one validation, so that the workers do not load the checkpoint once more each
PRECHECKED_ENV = 'MMDAVIT_PRECHECKED'


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, nothing written."""


class LostPeerError(Exception):
    """Another rank of a distributed run died or stopped answering: printed as one line, exit code 1 (not bad input:
    the same command, with --resume, is what to run again)."""


# what a tool reports as bad input (one line, exit 2): its own checks, the library's refusals of a checkpoint, and
# a run that met more unreadable images than it may skip
INPUT_ERRORS = (UserError, ResumeError, CheckpointError, UnreadableImagesError)


def prechecked(launcher: str) -> bool:
    """A worker started by the launchers, which validated the input once for all of them."""
    return launcher != 'none' and os.environ.get(PRECHECKED_ENV) == '1'


def add_common_args(parser) -> None:
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', '--options', nargs='+', action=DictAction, dest='cfg_options',
                        help='override config keys, e.g. model.backbone.drop_path_rate=0.2 '
                             '(--options is the original release\'s name for it)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)



def run_main(main) -> None:
    """Runs a tool's main, turning UserError into one clear line and exit code 2."""
    try:
        main()
    except INPUT_ERRORS as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except LostPeerError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    finally:  # also on UserError: the group goes before the exit
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def local_rank_env(args) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
