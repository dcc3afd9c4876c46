_base_ = [
    './_base_/upernet_davit-t.py',
    'mmseg::_base_/datasets/ade20k.py',  # data/ade/ADEChallengeData2016, 512x512 crops, TTA 0.5..1.75 + flip
    'mmseg::_base_/default_runtime.py',
    './_base_/adamw_poly_160k.py',
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
train_dataloader = dict(batch_size=2)
