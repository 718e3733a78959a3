"""Training programs the example TrainJobs run (``python -m examples.<name>.train``)."""
