# The toy RetinaNet run with a Florence-2-style backbone: a tiny arch carrying every Florence-2 option (windows of 12,
# 3x3 downsampling convs, channel attention v2), to prove they go through the OpenMMLab adapter on a CPU budget.
_base_ = './retinanet_davit-t_toy-coco.py'
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=(32, 64, 128, 256), depths=(1, 1, 1, 1),
                            num_heads=(1, 2, 4, 8),
                            window_size=12, down_kernel_size=3, channel_attn_v2=True), out_indices=(1, 2, 3)),
    neck=dict(in_channels=[64, 128, 256]))
