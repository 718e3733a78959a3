"""The node agent of localcluster: runs the pods bound to its node as local processes."""
