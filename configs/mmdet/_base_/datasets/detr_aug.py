# The official release's training augmentation (from DETR / Sparse R-CNN): either a multi-scale resize to a short side
# of 480..800, or a resize to 400..600, a random crop of 384..600 and then the multi-scale resize.
_multi_scale = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333),
                (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
detr_aug = dict(
    type='RandomChoice',
    transforms=[
        [dict(type='RandomChoiceResize', scales=_multi_scale, keep_ratio=True)],
        [
            dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
            dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
            dict(type='RandomChoiceResize', scales=_multi_scale, keep_ratio=True),
        ],
    ])
