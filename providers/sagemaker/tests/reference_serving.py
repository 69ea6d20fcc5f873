"""Serve a generated SageMaker model directory the way the prebuilt images do, and answer requests.

Run by a reference venv's python (the image's libraries, sagemaker-inference, no cloudserve)::

    python reference_serving.py OPT_ML REQUESTS.json

``OPT_ML`` stands for ``/opt/ml``: ``OPT_ML/model`` is the extracted ``model.tar.gz``. The
container's environment (``SAGEMAKER_PROGRAM``, ``SAGEMAKER_SUBMIT_DIRECTORY``) comes from this
process's environment, with ``/opt/ml`` read as ``OPT_ML``.

1. Loading, as ``sagemaker-containers`` 2.8.6 does before the server starts
   (``sagemaker_containers/_modules.py`` ``import_module(uri, name)``, which calls
   ``_files.download_and_extract(uri, _env.code_dir)``, then ``prepare`` and ``install``). That
   package pins flask 1.1.1 and does not import on Python 3.11, so its steps are copied here:
   the submit directory is copied (or, for ``s3://``, extracted) into ``/opt/ml/code``, and the
   module is imported from there. ``install`` runs ``pip install .`` on a generated
   ``setup.py(packages=[''])``, which makes the directory's modules importable; putting the
   directory on ``sys.path`` has the same effect without a build.
2. Requests go through ``sagemaker_inference.transformer.Transformer`` (the package itself,
   installed in the venv at the image's version): ``validate_and_initialize`` (``model_fn``),
   then per request ``input_fn`` → ``predict_fn`` → ``output_fn``, with its Content-Type /
   Accept handling (``*/*`` becomes the default accept). MMS's request context is a small stand-in
   with the attributes ``transform`` reads.

Prints one JSON object: {"results": [{"status", "content_type", "body"}, ...]}.
"""

import importlib
import importlib.util
import json
import os
import shutil
import sys
import tarfile


def download_and_extract(uri, path):
    """sagemaker_containers._files.download_and_extract (2.8.6), minus the S3 download."""
    if not os.path.exists(path):
        os.makedirs(path)
    if not os.listdir(path):
        if uri.startswith("s3://"):
            raise ValueError("no S3 here: give the extracted location of " + uri)
        elif os.path.isdir(uri):
            if uri == path:
                return
            if os.path.exists(path):
                shutil.rmtree(path)
            shutil.copytree(uri, path)
        elif tarfile.is_tarfile(uri):
            with tarfile.open(name=uri, mode="r:gz") as t:
                t.extractall(path=path)
        else:
            shutil.copy2(uri, path)


def import_module(uri, name, code_dir):
    """sagemaker_containers._modules.import_module (2.8.6): download/extract, then import."""
    download_and_extract(uri, code_dir)
    sys.path.insert(0, code_dir)  # what ``pip install .`` of the generated setup.py achieves
    module = importlib.import_module(name)
    return module


class _RequestProcessor:
    def __init__(self, headers):
        self._headers = headers

    def get_request_properties(self):
        return self._headers


class _Context:
    """The attributes of MMS's context that ``Transformer.transform`` reads and sets."""

    def __init__(self, model_dir, headers):
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_processor = [_RequestProcessor(headers)]
        self.status = 200
        self.content_type = None

    def set_response_content_type(self, idx, value):
        self.content_type = value

    def set_response_status(self, code=200, phrase=""):
        self.status = code


def main(opt_ml, requests_file):
    program = os.environ["SAGEMAKER_PROGRAM"]
    submit = os.environ["SAGEMAKER_SUBMIT_DIRECTORY"].replace("/opt/ml", opt_ml, 1)
    model_dir = os.path.join(opt_ml, "model")
    name = program[: -len(".py")] if program.endswith(".py") else program
    import_module(submit, name, os.path.join(opt_ml, "code"))
    assert importlib.util.find_spec("cloudserve") is None, "cloudserve must not be importable"

    from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
    from sagemaker_inference.transformer import Transformer

    class _Defaults(DefaultInferenceHandler):
        """The toolkit requires a handler class; the user module overrides every function."""

    transformer = Transformer(default_inference_handler=_Defaults())
    with open(requests_file) as fh:
        requests = json.load(fh)
    results = []
    for request in requests:
        headers = {"Content-Type": request["content_type"], "Accept": request["accept"]}
        context = _Context(model_dir, headers)
        body = request["body"].encode("utf-8")
        (out,) = transformer.transform([{"body": body}], context)
        if isinstance(out, bytes):
            out = out.decode("utf-8")
        results.append(
            {"status": context.status, "content_type": context.content_type, "body": out}
        )
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
