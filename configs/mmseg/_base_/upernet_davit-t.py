# UPerNet + auxiliary FCN head on DaViT-T, from mmseg's own UPerNet base.
_base_ = 'mmseg::_base_/models/upernet_r50.py'
custom_imports = dict(imports=['mmseg_davit'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='DaViT',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        window_size=None,  # the arch's: 7, or 12 for the Florence-2 (_fl) and large_window12 archs
        with_cp=False,
        init_cfg=None),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, in_index=2, num_classes=150))
