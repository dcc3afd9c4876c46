# The toy UPerNet run with a Florence-2-style backbone: a tiny arch carrying every Florence-2 option (windows of 12,
# 3x3 downsampling convs, channel attention v2), to prove they go through the OpenMMLab adapter on a CPU budget.
_base_ = './upernet_davit-t_toy-ade.py'
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=(32, 64, 128, 256), depths=(1, 1, 1, 1),
                            num_heads=(1, 2, 4, 8),
                            window_size=12, down_kernel_size=3, channel_attn_v2=True)),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128))
