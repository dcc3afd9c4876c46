_base_ = [
    './_base_/upernet_davit-t.py',
    'mmseg::_base_/datasets/ade20k.py',  # data/ade/ADEChallengeData2016, 512x512 crops, test size (2048, 512)
    'mmseg::_base_/default_runtime.py',
    './_base_/adamw_poly_160k.py',
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
train_dataloader = dict(batch_size=2)

# --aug-test as the release measured its multi-scale mIoU (mmseg 0.x MultiScaleFlipAug): each ratio scales the test
# size (2048, 512) and the image is fitted into that, then flipped and not. mmseg 1.x's ADE20K base multiplies the
# image's own size by the ratio instead, which differs for every image whose short side is not 512.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])]
