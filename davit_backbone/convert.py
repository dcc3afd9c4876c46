"""Checkpoint keys from every DaViT source -> this package's keys.

Sources, detected from the keys themselves:
- ``official``: the paper's release (github.com/dingmyu/davit): ``patch_embeds.*``, ``main_blocks.i.j.{0,1}.cpe.{0,1}``,
  ``norms`` + ``head`` (classifier), ``norm{i}`` (its detection/segmentation backbone).
- ``timm``: ``davit_*`` models: ``stem.*``, ``stages.i.blocks.j.{0,1}.*``, ``head.norm``/``head.fc``
  (the Florence-2 ``*_fl`` variants name blocks ``spatial_block``/``channel_block``, as we do).
- ``mmpretrain``: ``DaViT`` backbone (+ ``ImageClassifier`` wrapper): ``patch_embed.projection``,
  ``attn.w_msa.qkv``, ``ffn.layers.*``, and each stage's downsample stored at the *end* of the previous stage.
- ``florence2``: Florence-2 as its 2024 remote code saved it (Hugging Face ``microsoft/Florence-2-*``,
  ``pytorch_model.bin`` or ``model.safetensors``): the vision tower under ``vision_tower.`` (``convs.i.{proj,norm}``
  = stem and downsamples, ``blocks.i.j.{spatial,channel}_block.{conv1.fn.dw, window_attn|channel_attn.{norm,fn},
  conv2.fn.dw, ffn.{norm, fn.net}}``); the rest (language model, image projection, position/temporal embeddings) is
  dropped because it is recognised as Florence-2's (``FLORENCE2_NON_VISION``).
- ``florence2-transformers``: Florence-2 as transformers (>= 4.56) ships it natively (``florence-community/
  Florence-2-*``): ``convs.i.{conv,norm}``, ``blocks.i.j.{spatial,channel}_block.{conv1, norm1, window_attn|
  channel_attn.{qkv,proj}, conv2, norm2, ffn.fc{1,2}}``, found under ``model.vision_tower.`` (a whole
  ``Florence2ForConditionalGeneration``, beside ``model.language_model.``, ``model.multi_modal_projector.`` and
  ``lm_head.``), under ``vision_tower.`` (a saved ``Florence2Model``) or bare (a saved ``Florence2VisionBackbone``).
  A bare remote-code tower (``convs.*``/``blocks.*`` with ``.fn.`` names) is read as ``florence2``.
  For either Florence-2 layout any key that is neither tower nor a recognised part is unknown and raises as usual.
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
           'to_florence2', 'CheckpointFormatError', 'OUR_KEY_PATTERN', 'TOWER_KEY_PATTERN']


class CheckpointFormatError(ValueError):
    """The checkpoint is not a DaViT checkpoint in any known layout."""


_SUB = r'(?:cpe1\.proj|cpe2\.proj|norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)'
OUR_KEY_PATTERN = re.compile(
    r'^(?:stem\.(?:conv|norm)'
    r'|stages\.\d+\.downsample\.(?:norm|conv)'
    rf'|stages\.\d+\.blocks\.\d+\.(?:spatial_block|channel_block)\.{_SUB}'
    r'|head\.(?:norm|fc)'
    r'|norm\d+)\.(?:weight|bias)$')
# The tower: what every complete DaViT checkpoint fills (output norms and the classifier are optional).
TOWER_KEY_PATTERN = re.compile(r'^(?:stem|stages)\.')


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


# The parts of a Florence-2 checkpoint that are not the vision tower, recognised so that they can be dropped: the
# remote-code release's (BART language model, projection to its width, 2-D position / temporal embeddings) and
# transformers' native names (``multi_modal_projector`` holds the same projection and embeddings, ``lm_head`` the
# tied output layer). Only a checkpoint with a vision tower may drop them.
FLORENCE2_NON_VISION = re.compile(
    r'^(?:language_model\.|image_projection$|image_proj_norm\.|image_pos_embed\.|visual_temporal_embed\.'
    r'|multi_modal_projector\.|lm_head\.)')
FLORENCE2_PREFIX = 'vision_tower.'
_FLORENCE2_WHOLE_PREFIX = 'model.'  # Florence2ForConditionalGeneration holds Florence2Model as .model
_FLORENCE2_BARE = re.compile(r'^(?:convs\.\d+\.|blocks\.\d+\.\d+\.|norms\.)')
# inner names only transformers' native modules use: the patch embedding's conv, the blocks' plain conv1/conv2, ffn.fc1
_FLORENCE2_NATIVE = re.compile(r'^convs\.\d+\.conv\.|_block\.conv[12]\.(?:weight|bias)$|\.ffn\.fc[12]\.')


def _florence2_tower(sd: Mapping[str, torch.Tensor]):
    """(format, tower state dict with the tower's own keys, unknown keys) when ``sd`` is Florence-2 in any of its
    layouts, else None. Recognised parts beside the tower are dropped here; the unknown ones are returned."""
    keys = list(sd)
    if any(k.startswith(_FLORENCE2_WHOLE_PREFIX + FLORENCE2_PREFIX) for k in keys):
        sd = OrderedDict((k[len(_FLORENCE2_WHOLE_PREFIX):] if k.startswith(_FLORENCE2_WHOLE_PREFIX) else k, v)
                         for k, v in sd.items())
        keys = list(sd)
    if any(k.startswith(FLORENCE2_PREFIX) for k in keys):
        tower = OrderedDict((k[len(FLORENCE2_PREFIX):], v) for k, v in sd.items() if k.startswith(FLORENCE2_PREFIX))
        unknown = [k for k in keys if not k.startswith(FLORENCE2_PREFIX) and not FLORENCE2_NON_VISION.match(k)]
    # no other layout names its modules convs / blocks
    elif any(_FLORENCE2_BARE.match(k) and not k.startswith('norms.') for k in keys):
        tower = OrderedDict((k, v) for k, v in sd.items() if _FLORENCE2_BARE.match(k))
        unknown = [k for k in keys if k not in tower and not FLORENCE2_NON_VISION.match(k)]
    else:
        return None
    native = any(_FLORENCE2_NATIVE.search(k) for k in tower)
    return ('florence2-transformers' if native else 'florence2'), tower, unknown


def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    florence2 = _florence2_tower(sd)
    return florence2[0] if florence2 is not None else _detect_other_format(list(sd))


def _detect_other_format(keys) -> str:
    """The layouts other than Florence-2's, from the keys."""
    if any(k.startswith(('patch_embeds.', 'main_blocks.')) for k in keys):
        return 'official'
    if any(k.startswith('patch_embed.projection') or '.w_msa.' in k or '.ffn.layers.' in k for k in keys):
        return 'mmpretrain'
    if any(re.match(r'stages[._]\d+\.blocks\.\d+\.[01]\.|stages_\d+\.', k) for k in keys):
        return 'timm'
    if any(k.startswith('stem.conv.') or '.spatial_block.' in k for k in keys):
        return 'ours'
    raise CheckpointFormatError(
        'not a DaViT checkpoint: no key looks like the official release, timm, mmpretrain, Florence-2 or mmdavit '
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


# Florence-2's vision tower (its own keys, both layouts) -> ours: prefix rules (first match wins), then infixes.
# convs.0 is the stem (7x7, stride 4, LayerNorm after), convs.i (i > 0) the downsample entering stage i (LayerNorm
# before). The remote-code infixes go first: after them no ``.fn.`` name is left for the native rules to misread.
_FLORENCE2_PREFIXES = [
    (r'^convs\.0\.(?:proj|conv)\.', 'stem.conv.'),
    (r'^convs\.0\.norm\.', 'stem.norm.'),
    (r'^convs\.(\d+)\.(?:proj|conv)\.', r'stages.\1.downsample.conv.'),
    (r'^convs\.(\d+)\.norm\.', r'stages.\1.downsample.norm.'),
    (r'^blocks\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.'),
    (r'^norms\.', 'head.norm.'),  # the tower's final norm, where a checkpoint has one
]
_FLORENCE2_INFIXES = [
    # remote code (2024)
    ('.conv1.fn.dw.', '.cpe1.proj.'), ('.conv2.fn.dw.', '.cpe2.proj.'),
    ('.window_attn.norm.', '.norm1.'), ('.channel_attn.norm.', '.norm1.'),
    ('.window_attn.fn.', '.attn.'), ('.channel_attn.fn.', '.attn.'),
    ('.ffn.norm.', '.norm2.'), ('.ffn.fn.net.', '.mlp.'),
    # transformers' native modules (norm1/norm2 are ours already)
    ('_block.conv1.', '_block.cpe1.proj.'), ('_block.conv2.', '_block.cpe2.proj.'),
    ('.window_attn.', '.attn.'), ('.channel_attn.', '.attn.'), ('.ffn.', '.mlp.'),
]


def _from_florence2(k: str) -> str:
    for pattern, repl in _FLORENCE2_PREFIXES:
        k, n = re.subn(pattern, repl, k)
        if n:
            break
    for theirs, ours in _FLORENCE2_INFIXES:
        k = k.replace(theirs, ours)
    return k


def to_florence2(sd: Mapping[str, torch.Tensor]):
    """Our keys -> transformers' native ``Florence2VisionBackbone`` keys (``convs.*``, ``blocks.*``), which its
    ``load_state_dict(strict=True)`` takes; put them under ``model.vision_tower.`` of a whole
    ``Florence2ForConditionalGeneration``. Returns (state dict, our keys the tower has no place for: the output norms
    ``norm{i}`` and the classifier ``head.*``)."""
    out, dropped = OrderedDict(), []
    for k, v in sd.items():
        if not TOWER_KEY_PATTERN.match(k):
            dropped.append(k)
            continue
        k = re.sub(r'^stem\.', 'convs.0.', k)
        k = re.sub(r'^stages\.(\d+)\.downsample\.', r'convs.\1.', k)
        k = re.sub(r'^stages\.(\d+)\.blocks\.', r'blocks.\1.', k)
        attn = 'window_attn' if '.spatial_block.' in k else 'channel_attn'
        for ours, theirs in (('.attn.', f'.{attn}.'), ('.mlp.', '.ffn.'), ('.cpe1.proj.', '.conv1.'),
                             ('.cpe2.proj.', '.conv2.')):
            k = k.replace(ours, theirs)
        out[k] = v
    return out, dropped


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
               'florence2': _from_florence2, 'florence2-transformers': _from_florence2, 'ours': lambda k: k}


def convert_state_dict(checkpoint, return_format: bool = False):
    """Any DaViT checkpoint (object or state dict) -> state dict with this package's keys.

    Raises:
        CheckpointFormatError: when the source cannot be recognised, or some of its keys map to nothing we know
            (the message lists them), so that a wrong file never loads half-way.
    """
    sd = unwrap_state_dict(checkpoint)
    florence2 = _florence2_tower(sd)
    outside = []
    if florence2 is not None:  # the VLM around the tower: dropped because recognised, never because merely unknown
        fmt, sd, outside = florence2
    else:
        fmt = _detect_other_format(list(sd))
    convert = _CONVERTERS[fmt]
    out = OrderedDict((convert(k), v) for k, v in sd.items())
    unknown = [f'(beside the tower) {k}' for k in outside] + [k for k in out if not OUR_KEY_PATTERN.match(k)]
    if unknown:
        raise CheckpointFormatError(
            f'{len(unknown)} key(s) of this {fmt}-format checkpoint map to no DaViT parameter, e.g. {unknown[:8]}. '
            'Is it a DaViT checkpoint? Supported: the official release, timm davit_* (and *_fl), mmpretrain DaViT, '
            'Florence-2 (remote code or transformers), mmdavit.')
    return (out, fmt) if return_format else out


def to_official(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our keys -> the official release's keys (the inverse of ``_from_official``), for exporting and testing."""
    return OrderedDict((_official_key(k, to_ours=False), v) for k, v in sd.items())
