"""modelops: declarative GitOps for machine-learning model deployments.

The package is a pipeline of stages (see ``shared/DESIGN.md``): ``spec`` loads and
validates YAML specs, ``policy`` evaluates Rego, ``build`` makes Bentos, ``engine``
renders and applies infrastructure, ``gitops`` tracks revisions and the ledger,
``monitor`` computes drift and drives retraining, ``report`` formats results.
"""

__version__ = "0.1.0"
API_VERSION = "modelops/v1alpha1"
KIND = "ModelDeployment"
