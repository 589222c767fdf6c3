"""Shared core of the pipeline: everything the stage scripts call and the tests exercise.

Modules are kept independent so that each stage in dvc.yaml can list exactly the ones it uses
as deps (tests/test_dvc_yaml.py checks the lists against the real imports).
"""
