"""trainjob-operator: runs distributed PyTorch training jobs on Kubernetes."""
