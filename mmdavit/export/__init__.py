"""A task model as one ONNX graph: ``graphs`` (classifier, segmenter and detector graphs, the preprocessing recipe
written into ``deploy.json``) and ``detector_graph`` (NMS and RoIAlign inside the graph)."""
