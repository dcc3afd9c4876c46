_base_ = './_base_/davit_in1k.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.4), head=dict(in_channels=1024))
