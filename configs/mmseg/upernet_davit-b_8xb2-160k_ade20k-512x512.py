# DaViT-B: drop path 0.4, one step above T/S for the wider model (the ImageNet recipe also gives B the most: 0.4).
_base_ = './upernet_davit-t_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
