_base_ = './_base_/davit_in1k.py'
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.1), head=dict(in_channels=768))
