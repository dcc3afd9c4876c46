"""davit_deploy.folder, the deployed folder's one reader and writer: what it writes it reads back, and a folder it
cannot run (no deploy.json, not JSON, another format, a newer version, keys missing) is refused with a typed error
carrying the path and what is off."""
import json

import pytest

from davit_deploy import DeployedModelError, DeployFolderError, folder


def meta(**changes):
    m = folder.new_meta('mmseg', outputs=('seg_logits', 'seg_map'), preprocess=dict(pipeline=[], to_rgb=True),
                        classes=['sky', 'box'], palette=[(1, 2, 3), (4, 5, 6)], min_size=33, max_size=4096,
                        source=dict(config='c.py'), verification=[])
    m.update(changes)
    return m


def write_json(tmp_path, content):
    (tmp_path / folder.META_FILE).write_text(json.dumps(content))


def test_round_trip(tmp_path):
    written = meta()
    assert folder.write(str(tmp_path), written) == str(tmp_path / 'deploy.json')
    read = folder.read(str(tmp_path))
    assert read == json.loads(json.dumps(written))
    assert read['format'] == folder.FORMAT == 'mmdavit-deploy/1' and read['model'] == folder.MODEL_FILE
    assert read['palette'] == [[1, 2, 3], [4, 5, 6]] and 'size_input' not in read['input']


def test_int8_meta_names_its_graph_and_quantisation(tmp_path):
    m = folder.new_meta('mmpretrain', outputs=('logits', 'scores'), preprocess={}, classes=[], palette=None,
                        min_size=33, max_size=64, source={}, verification=[], quantization=dict(method='dynamic'))
    folder.write(str(tmp_path), m)
    read = folder.read(str(tmp_path))
    assert read['model'] == folder.INT8_MODEL_FILE == 'model-int8.onnx' and read['quantization']['method'] == 'dynamic'
    assert read['format'] == 'mmdavit-deploy/1'  # an optional key: a version-1 reader opens the model it names


def test_detector_meta_names_its_size_input_and_postprocess(tmp_path):
    m = folder.new_meta('mmdet', outputs=['dets', 'labels'], preprocess={}, classes=[], palette=None, min_size=1,
                        max_size=64, source={}, verification=[], size_input='image_size',
                        postprocess=dict(mask_thr_binary=0.5))
    folder.write(str(tmp_path), m)
    read = folder.read(str(tmp_path))
    assert read['input']['size_input'] == 'image_size' and read['postprocess'] == dict(mask_thr_binary=0.5)


@pytest.mark.parametrize('content,problem,detail', [
    (None, DeployFolderError.MISSING, ''),
    ('{"format": ', DeployFolderError.UNREADABLE, 'Expecting value'),
    ([1, 2], DeployFolderError.UNREADABLE, 'list'),
    (dict(format='something else'), DeployFolderError.FOREIGN, "'something else'"),
    (meta(task='mmocr'), DeployFolderError.FOREIGN, "'mmocr'"),
    (meta(format='mmdavit-deploy/2'), DeployFolderError.NEWER, 'mmdavit-deploy/2'),
    ({k: v for k, v in meta().items() if k != 'preprocess'}, DeployFolderError.INCOMPLETE, 'preprocess'),
    (meta(input=dict(max_size=64)), DeployFolderError.INCOMPLETE, 'input.min_size'),
    # the graph is one of the folder's own two files; an int8 one comes with its quantisation record
    (meta(model='../other/model.onnx'), DeployFolderError.UNREADABLE, "model '../other/model.onnx'"),
    (meta(model='model-int8.onnx'), DeployFolderError.UNREADABLE, 'without a quantization record'),
    (meta(model='model-int8.onnx', quantization=dict(method='int4')), DeployFolderError.UNREADABLE,
     "quantization.method 'int4'"),
    (meta(quantization=dict(method='dynamic')), DeployFolderError.UNREADABLE, "model 'model.onnx'"),
])
def test_a_folder_it_cannot_run_is_refused_with_what_is_off(tmp_path, content, problem, detail):
    if isinstance(content, str):
        (tmp_path / folder.META_FILE).write_text(content)
    elif content is not None:
        write_json(tmp_path, content)
    with pytest.raises(DeployFolderError) as e:
        folder.read(str(tmp_path))
    assert isinstance(e.value, DeployedModelError)
    assert e.value.problem == problem and detail in e.value.detail
    assert e.value.folder == str(tmp_path) and e.value.path == str(tmp_path / 'deploy.json')
    assert '\n' not in str(e.value)


def test_the_writer_refuses_what_the_reader_would(tmp_path):
    with pytest.raises(DeployFolderError, match='newer'):
        folder.write(str(tmp_path), meta(format='mmdavit-deploy/9'))
    assert not (tmp_path / folder.META_FILE).exists()


def test_palette_for():
    assert folder.palette_for(['a', 'b'], None, [[9, 9, 9]], [[1, 2, 3], [4, 5, 6]]) == [(1, 2, 3), (4, 5, 6)]
    drawn = folder.palette_for(['a', 'b', 'c'], [[1, 2, 3]])
    assert drawn == folder.palette_for(['a', 'b', 'c']) and len(drawn) == 3  # the same colours every run
    assert all(len(c) == 3 and all(0 <= v < 256 for v in c) for c in drawn)
    assert folder.palette_for([], [[1, 2, 3]]) == [(1, 2, 3)] and folder.palette_for([]) is None


def test_session_settings_are_the_tasks_and_an_older_folder_reads_with_the_defaults(tmp_path):
    """deploy.json records onnxruntime's settings per task; one written before the key existed (no "runtime") still
    loads, with onnxruntime's own defaults, which is how it ran then."""
    for task in folder.TASKS:
        m = folder.new_meta(task, outputs=['x'], preprocess={}, classes=[], palette=None, min_size=1, max_size=64,
                            source={}, verification=[])
        folder.write(str(tmp_path), m)
        assert folder.session_settings(folder.read(str(tmp_path))) == folder.TASK_SESSION[task]
    old = meta()
    del old['runtime']
    write_json(tmp_path, old)
    assert folder.session_settings(folder.read(str(tmp_path))) == folder.DEFAULT_SESSION
    # a partial or newer writer's settings: the known keys over the defaults, unknown keys left alone
    write_json(tmp_path, meta(runtime=dict(onnxruntime=dict(allow_spinning=False, future_knob=3), openvino={})))
    assert folder.session_settings(folder.read(str(tmp_path))) == dict(folder.DEFAULT_SESSION, allow_spinning=False)


@pytest.mark.parametrize('runtime,detail', [
    ([], 'runtime is a JSON list'),
    (dict(onnxruntime=dict(graph_optimization_level='max')), "graph_optimization_level 'max'"),
    (dict(onnxruntime=dict(intra_op_num_threads=-2)), 'intra_op_num_threads -2'),
    (dict(onnxruntime=dict(inter_op_num_threads=1.5)), 'inter_op_num_threads 1.5'),
    (dict(onnxruntime=dict(execution_mode='async')), "execution_mode 'async'"),
    (dict(onnxruntime=dict(enable_mem_pattern='no')), "enable_mem_pattern 'no'"),
])
def test_session_settings_it_cannot_apply_are_refused(tmp_path, runtime, detail):
    write_json(tmp_path, meta(runtime=runtime))
    with pytest.raises(DeployFolderError) as e:
        folder.read(str(tmp_path))
    assert e.value.problem == DeployFolderError.UNREADABLE and detail in e.value.detail


def test_every_cpu_unless_omp_num_threads_says_fewer(monkeypatch):
    from davit_deploy.model import session_options, usable_cpus
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    cpus = usable_cpus()
    assert cpus >= 1
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert usable_cpus() == 1
    if pytest.importorskip('onnxruntime'):
        assert session_options(folder.TASK_SESSION['mmdet']).intra_op_num_threads == 1
    monkeypatch.setenv('OMP_NUM_THREADS', str(cpus + 7))  # more than the process may use: the CPUs it has
    assert usable_cpus() == cpus
    for junk in ('', '0', 'two', '-3'):
        monkeypatch.setenv('OMP_NUM_THREADS', junk)
        assert usable_cpus() == cpus


def test_session_options_apply_the_settings():
    ort = pytest.importorskip('onnxruntime')
    from davit_deploy.model import session_options, usable_cpus
    o = session_options(folder.TASK_SESSION['mmdet'])
    assert o.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert o.intra_op_num_threads == usable_cpus() and o.inter_op_num_threads == 1
    assert o.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert o.enable_cpu_mem_arena and not o.enable_mem_pattern
    assert session_options(folder.TASK_SESSION['mmpretrain']).get_session_config_entry(
        'session.intra_op.allow_spinning') == '0'
    assert session_options(folder.TASK_SESSION['mmdet'], threads=3).intra_op_num_threads == 3
    default = session_options(None)  # a folder without settings: onnxruntime's defaults, as before
    assert default.intra_op_num_threads == 0 and default.enable_mem_pattern
    basic = session_options(dict(graph_optimization_level='basic', execution_mode='parallel', intra_op_num_threads=2))
    assert basic.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert basic.execution_mode == ort.ExecutionMode.ORT_PARALLEL and basic.intra_op_num_threads == 2
