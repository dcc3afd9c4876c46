# UPerNet 160k on Florence-2-large's vision tower (DaViT-H layout: 256/512/1024/2048 channels, ~360M parameters,
# windows of 12, 3x3 downsampling convs, channel attention v2), initialised from the Florence-2 release. Get the
# transformers-native checkpoint first (see docs/florence2.md):
#   hf download florence-community/Florence-2-large model.safetensors config.json \
#     --local-dir checkpoints/Florence-2-large
# The -b-fl recipe (stage-wise lr decay 0.8, no weight decay on norms) with the wider tower; the loader keeps the
# vision tower of the whole VLM file and reports norm0..3 as newly initialised.
_base_ = './upernet_davit-b-fl_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='huge_fl',
        # 0.4, 0.1 above -b-fl (ECCV DaViT-B's value): the same 12 blocks, 4x the parameters, ADE20K's 20k images
        drop_path_rate=0.4,
        # checkpointing: a training step of 2 crops holds 7.3 GiB of tensors with it (4.5 of them weights and AdamW
        # states; CPU allocation replay, 2026-12-06), about 9.3 without: on for headroom on 16 GB GPUs, at the cost
        # of recomputing each block's forward in the backward
        with_cp=True,
        pretrained='checkpoints/Florence-2-large'),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))
