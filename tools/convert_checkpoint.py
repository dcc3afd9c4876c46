#!/usr/bin/env python
"""Converts a DaViT checkpoint (official release, timm, mmpretrain or ours) to this package's keys.

    python tools/convert_checkpoint.py SRC DST [--to ours|official]

The output holds ``{'state_dict': ..., 'meta': {'source_format': ...}}`` and loads with plain ``torch.load``.
Nothing is written unless every key converts.
"""
import argparse
import os
import sys

import torch

from davit_backbone import CheckpointFormatError, convert_state_dict, to_official
from mmdavit.checkpoint import load_checkpoint_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint file (.pth/.pt/.bin/.safetensors)')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--to', choices=['ours', 'official'], default='ours', help='key layout to write')
    args = parser.parse_args(argv)
    try:
        sd, fmt = convert_state_dict(load_checkpoint_file(args.src), return_format=True)
    except (CheckpointFormatError, FileNotFoundError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if args.to == 'official':
        sd = to_official(sd)
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    tmp = args.dst + '.tmp'
    torch.save({'state_dict': sd, 'meta': {'source_format': fmt, 'layout': args.to}}, tmp)
    os.replace(tmp, args.dst)  # never leave a half-written file under the final name
    print(f'{args.src} ({fmt}, {len(sd)} tensors) -> {args.dst} ({args.to} layout)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
