"""Pulumi programs, one module per target platform.

Each exposes ``program(dep, image, stable_image=None) -> dict`` (stack outputs):
:mod:`stacks.kubernetes`, :mod:`stacks.aws_sagemaker`, :mod:`stacks.aws_serverless`.
The offline renderer (``reconciler.engine.render``) runs them under Pulumi's mocks and
the Automation API engine (``reconciler.engine.pulumi_engine``) runs them as inline
programs. The ``local`` platform has no Pulumi program (the local engine serves it).
"""
