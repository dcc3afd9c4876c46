"""Checkpoint keys from every DaViT source -> this package's keys.

Sources, detected from the keys themselves:
- ``official``: the paper's release (github.com/dingmyu/davit): ``patch_embeds.*``, ``main_blocks.i.j.{0,1}.cpe.{0,1}``,
  ``norms`` + ``head`` (classifier), ``norm{i}`` (its detection/segmentation backbone).
- ``timm``: ``davit_*`` models: ``stem.*``, ``stages.i.blocks.j.{0,1}.*``, ``head.norm``/``head.fc``
  (the Florence-2 ``*_fl`` variants name blocks ``spatial_block``/``channel_block``, as we do).
- ``mmpretrain``: ``DaViT`` backbone (+ ``ImageClassifier`` wrapper): ``patch_embed.projection``,
  ``attn.w_msa.qkv``, ``ffn.layers.*``, and each stage's downsample stored at the *end* of the previous stage.
- ``florence2``: a whole Florence-2 checkpoint (Hugging Face ``microsoft/Florence-2-*``, ``pytorch_model.bin`` or
  ``model.safetensors``): the vision tower under ``vision_tower.`` (``convs.i`` = stem and downsamples,
  ``blocks.i.j.{spatial,channel}_block.{conv1.fn.dw, window_attn|channel_attn.{norm,fn}, conv2.fn.dw, ffn.{norm,
  fn.net}}``); the rest (language model, image projection, position/temporal embeddings) is dropped because it is
  recognised as Florence-2's (``FLORENCE2_NON_VISION``); any other key is unknown and raises as usual.
- ``ours``: identity. timm's ``davit_*_fl`` models have our keys exactly (named blocks), so they load as ``ours``;
  their 3x3 downsample convs only fit a model built with ``down_kernel_size=3`` (the shape check says so).

Wrappers are stripped: ``state_dict``/``model``/``module`` dicts, ``module.`` (DDP) prefixes, and the ``backbone.``
prefix of whole OpenMMLab models (their necks and heads are dropped, except a classifier's ``head.fc``).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict, Mapping

import torch

__all__ = ['convert_state_dict', 'detect_format', 'unwrap_state_dict', 'strip_module_prefix', 'to_official',
           'CheckpointFormatError', 'OUR_KEY_PATTERN']


class CheckpointFormatError(ValueError):
    """The checkpoint is not a DaViT checkpoint in any known layout."""


_SUB = r'(?:cpe1\.proj|cpe2\.proj|norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)'
OUR_KEY_PATTERN = re.compile(
    r'^(?:stem\.(?:conv|norm)'
    r'|stages\.\d+\.downsample\.(?:norm|conv)'
    rf'|stages\.\d+\.blocks\.\d+\.(?:spatial_block|channel_block)\.{_SUB}'
    r'|head\.(?:norm|fc)'
    r'|norm\d+)\.(?:weight|bias)$')


def strip_module_prefix(sd: Mapping) -> Dict[str, torch.Tensor]:
    """The tensors of a state dict, without the ``module.`` prefix that DDP (and mmengine's wrappers) save."""
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                       for k, v in sd.items() if isinstance(v, torch.Tensor))


def unwrap_state_dict(obj) -> Dict[str, torch.Tensor]:
    """Finds the tensor dict inside a checkpoint object and strips DDP / OpenMMLab model prefixes."""
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f'expected a dict of tensors (a state dict), got {type(obj).__name__}')
    for key in ('state_dict', 'model', 'module', 'state_dict_ema', 'model_ema'):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = strip_module_prefix(obj)
    if not sd:
        raise CheckpointFormatError('the checkpoint holds no tensors')
    if any(k.startswith('backbone.') for k in sd):
        # A whole OpenMMLab model: keep its backbone, and a classifier's final Linear (mmpretrain LinearClsHead).
        sd = OrderedDict([(k[len('backbone.'):], v) for k, v in sd.items() if k.startswith('backbone.')]
                         + [(k, v) for k, v in sd.items() if k.startswith('head.fc.')])
    return sd


# The parts of a Florence-2 checkpoint that are not the vision tower (the remote-code layout of the Hugging Face
# release, as read by transformers' conversion script): BART language model, projection to its width, and the 2-D
# position / temporal embeddings added after the tower. Only a checkpoint with a ``vision_tower.`` part may drop them.
FLORENCE2_NON_VISION = re.compile(
    r'^(?:language_model\.|image_projection$|image_proj_norm\.|image_pos_embed\.|visual_temporal_embed\.)')
FLORENCE2_PREFIX = 'vision_tower.'


def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    keys = list(sd)
    if any(k.startswith(FLORENCE2_PREFIX) for k in keys):
        return 'florence2'
    if any(k.startswith(('patch_embeds.', 'main_blocks.')) for k in keys):
        return 'official'
    if any(k.startswith('patch_embed.projection') or '.w_msa.' in k or '.ffn.layers.' in k for k in keys):
        return 'mmpretrain'
    if any(re.match(r'stages[._]\d+\.blocks\.\d+\.[01]\.|stages_\d+\.', k) for k in keys):
        return 'timm'
    if any(k.startswith('stem.conv.') or '.spatial_block.' in k for k in keys):
        return 'ours'
    raise CheckpointFormatError(
        'not a DaViT checkpoint: no key looks like the official release, timm, mmpretrain or mmdavit '
        f'(first keys: {keys[:5]})')


# The official layout <-> ours, one table read both ways (convert_state_dict and to_official). Prefix rules, first
# match wins; {i}/{j} stand for stage and block numbers. Then the ConvPosEnc infixes.
_OFFICIAL_PREFIXES = [
    ('patch_embeds.0.proj.', 'stem.conv.'),
    ('patch_embeds.0.norm.', 'stem.norm.'),
    ('patch_embeds.{i}.proj.', 'stages.{i}.downsample.conv.'),
    ('patch_embeds.{i}.norm.', 'stages.{i}.downsample.norm.'),
    ('main_blocks.{i}.{j}.0.', 'stages.{i}.blocks.{j}.spatial_block.'),
    ('main_blocks.{i}.{j}.1.', 'stages.{i}.blocks.{j}.channel_block.'),
    ('norms.', 'head.norm.'),  # before the next rule, so that head.norm is not read as head.fc
    ('head.', 'head.fc.'),
]
_OFFICIAL_INFIXES = [('.cpe.0.', '.cpe1.'), ('.cpe.1.', '.cpe2.')]


def _prefix_regex(template: str) -> re.Pattern:
    parts = re.split(r'(\{[ij]\})', template)
    return re.compile('^' + ''.join(rf'(?P<{p[1]}>\d+)' if p in ('{i}', '{j}') else re.escape(p) for p in parts))


_OFFICIAL_RULES = [(_prefix_regex(off), off, _prefix_regex(our), our) for off, our in _OFFICIAL_PREFIXES]


def _official_key(k: str, to_ours: bool) -> str:
    for official_re, official, our_re, our in _OFFICIAL_RULES:
        m = (official_re if to_ours else our_re).match(k)
        if m:
            k = (our if to_ours else official).format(**m.groupdict()) + k[m.end():]
            break
    for official, our in _OFFICIAL_INFIXES:
        k = k.replace(official, our) if to_ours else k.replace(our, official)
    return k


def _from_official(k: str) -> str:
    return _official_key(k, to_ours=True)


def _from_timm(k: str) -> str:
    k = re.sub(r'^stages_(\d+)\.', r'stages.\1.', k)  # features_only models flatten the stage list
    k = re.sub(r'^(stages\.\d+\.blocks\.\d+)\.0\.', r'\1.spatial_block.', k)
    return re.sub(r'^(stages\.\d+\.blocks\.\d+)\.1\.', r'\1.channel_block.', k)


# Florence-2's vision tower -> ours: prefix rules (first match wins) then infixes. convs.0 is the stem (7x7, stride 4,
# LayerNorm after), convs.i (i > 0) the downsample entering stage i (LayerNorm before).
_FLORENCE2_PREFIXES = [
    (r'^convs\.0\.proj\.', 'stem.conv.'),
    (r'^convs\.0\.norm\.', 'stem.norm.'),
    (r'^convs\.(\d+)\.proj\.', r'stages.\1.downsample.conv.'),
    (r'^convs\.(\d+)\.norm\.', r'stages.\1.downsample.norm.'),
    (r'^blocks\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.'),
    (r'^norms\.', 'head.norm.'),  # the tower's final norm, where a checkpoint has one
]
_FLORENCE2_INFIXES = [
    ('.conv1.fn.dw.', '.cpe1.proj.'), ('.conv2.fn.dw.', '.cpe2.proj.'),
    ('.window_attn.norm.', '.norm1.'), ('.channel_attn.norm.', '.norm1.'),
    ('.window_attn.fn.', '.attn.'), ('.channel_attn.fn.', '.attn.'),
    ('.ffn.norm.', '.norm2.'), ('.ffn.fn.net.', '.mlp.'),
]


def _from_florence2(k: str) -> str:
    if not k.startswith(FLORENCE2_PREFIX):  # neither tower nor a known Florence-2 part: reported as unknown
        return f'(outside vision_tower) {k}'
    k = k[len(FLORENCE2_PREFIX):]
    for pattern, repl in _FLORENCE2_PREFIXES:
        k, n = re.subn(pattern, repl, k)
        if n:
            break
    for theirs, ours in _FLORENCE2_INFIXES:
        k = k.replace(theirs, ours)
    return k


def _from_mmpretrain(k: str) -> str:
    k = k.replace('patch_embed.projection.', 'stem.conv.').replace('patch_embed.norm.', 'stem.norm.')
    # mmpretrain keeps the downsample that *enters* stage i+1 at the end of stage i
    m = re.match(r'^stages\.(\d+)\.downsample\.(projection|norm)\.(.*)$', k)
    if m:
        return f'stages.{int(m.group(1)) + 1}.downsample.{"conv" if m.group(2) == "projection" else "norm"}.' \
               f'{m.group(3)}'
    k = k.replace('.attn.w_msa.', '.attn.')
    k = k.replace('.ffn.layers.0.0.', '.mlp.fc1.').replace('.ffn.layers.1.', '.mlp.fc2.')
    return k


_CONVERTERS = {'official': _from_official, 'timm': _from_timm, 'mmpretrain': _from_mmpretrain,
               'florence2': _from_florence2, 'ours': lambda k: k}


def convert_state_dict(checkpoint, return_format: bool = False):
    """Any DaViT checkpoint (object or state dict) -> state dict with this package's keys.

    Raises:
        CheckpointFormatError: when the source cannot be recognised, or some of its keys map to nothing we know
            (the message lists them), so that a wrong file never loads half-way.
    """
    sd = unwrap_state_dict(checkpoint)
    fmt = detect_format(sd)
    if fmt == 'florence2':  # the VLM around the tower: dropped because recognised, never because merely unknown
        sd = OrderedDict((k, v) for k, v in sd.items() if not FLORENCE2_NON_VISION.match(k))
    convert = _CONVERTERS[fmt]
    out = OrderedDict((convert(k), v) for k, v in sd.items())
    unknown = [k for k in out if not OUR_KEY_PATTERN.match(k)]
    if unknown:
        raise CheckpointFormatError(
            f'{len(unknown)} key(s) of this {fmt}-format checkpoint map to no DaViT parameter, e.g. {unknown[:8]}. '
            'Is it a DaViT checkpoint? Supported: the official release, timm davit_* (and *_fl), mmpretrain DaViT, '
            'Florence-2 (vision_tower.*), mmdavit.')
    return (out, fmt) if return_format else out


def to_official(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our keys -> the official release's keys (the inverse of ``_from_official``), for exporting and testing."""
    return OrderedDict((_official_key(k, to_ours=False), v) for k, v in sd.items())
