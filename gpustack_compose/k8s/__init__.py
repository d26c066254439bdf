"""The Kubernetes target: the same plan rendered as a kustomize base."""
