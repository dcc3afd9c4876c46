# RetinaNet with a DaViT-T backbone on mmdet's own RetinaNet base.
# The original release fed FPN all four stages with start_level=1, so stage 0 and its norm were computed and unused.
# Here the backbone returns stages 1..3 only (no norm0 is built) and FPN starts at its first input: the same
# network and the same FPN parameter names (lateral_convs.0 is stage 1 in both), without the wasted stage-0 output.
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'
custom_imports = dict(imports=['mmdet_davit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='DaViT',
        arch='tiny',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        window_size=None,  # the arch's: 7, or 12 for the Florence-2 (_fl) and large_window12 archs
        with_cp=False,
        init_cfg=None),
    neck=dict(in_channels=[192, 384, 768], start_level=0, add_extra_convs='on_input', num_outs=5))
