"""Models in and out of files: ``save_pretrained`` (OpenCLIP's ``local-dir:`` layout), the
init-from-clip conversion, and ``load_model`` (a name, a folder or a run -> a model)."""
