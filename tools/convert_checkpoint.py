#!/usr/bin/env python
"""Converts a DaViT checkpoint (official release, timm, mmpretrain, Florence-2 or ours) to another key layout.

    python tools/convert_checkpoint.py SRC DST [--to ours|official|florence2]

SRC: a .pth/.pt/.bin/.safetensors file, a sharded ``*.index.json`` or a Hugging Face ``save_pretrained`` folder.
A DST ending in ``.safetensors`` holds the tensors alone; any other DST holds
``{'state_dict': ..., 'meta': {'source_format': ..., 'layout': ...}}`` and loads with plain ``torch.load``.
``--to florence2`` writes transformers' native ``Florence2VisionBackbone`` keys (``convs.*``, ``blocks.*``): a tower
fine-tuned here goes back into a Florence-2 model with ``model.model.vision_tower.load_state_dict(sd)``; the output
norms and classifier, which the tower does not have, are left out (and listed).
Nothing is written unless every key converts.
"""
import argparse
import os
import sys

import _env  # tools/ is on sys.path as the script's folder

_env.require('torch', 'mmdavit')

import torch  # noqa: E402

from davit_backbone import CheckpointFormatError, convert_state_dict, to_florence2, to_official  # noqa: E402
from mmdavit.checkpoints.reader import CheckpointError, read_checkpoint  # noqa: E402  the tools' one gate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint file (.pth/.pt/.bin/.safetensors), shard index or save_pretrained '
                                    'folder')
    parser.add_argument('dst', help='output file (.pth, or .safetensors for the tensors alone)')
    parser.add_argument('--to', choices=['ours', 'official', 'florence2'], default='ours',
                        help='key layout to write (florence2: transformers\' Florence2VisionBackbone)')
    args = parser.parse_args(argv)
    try:
        sd, fmt = convert_state_dict(read_checkpoint(args.src), return_format=True)
    except (CheckpointError, CheckpointFormatError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    left_out = []
    if args.to == 'official':
        sd = to_official(sd)
    elif args.to == 'florence2':
        sd, left_out = to_florence2(sd)
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    tmp = args.dst + '.tmp'
    if args.dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, tmp,
                  metadata={'format': 'pt', 'source_format': fmt, 'layout': args.to})
    else:
        torch.save({'state_dict': sd, 'meta': {'source_format': fmt, 'layout': args.to}}, tmp)
    os.replace(tmp, args.dst)  # never leave a half-written file under the final name
    print(f'{args.src} ({fmt}, {len(sd)} tensors) -> {args.dst} ({args.to} layout)'
          + (f'; left out (the layout has no place for them): {sorted({k.rsplit(".", 1)[0] for k in left_out})}'
             if left_out else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
