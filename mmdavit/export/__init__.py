"""A task model as one ONNX graph: ``graphs`` (classifier, segmenter and detector graphs, the preprocessing recipe
written into ``deploy.json``), ``detector_graph`` (NMS and RoIAlign inside the graph) and ``quantize`` (the
backbone's Linear layers to int8 with onnxruntime, ``tools/deploy.py --int8``)."""
