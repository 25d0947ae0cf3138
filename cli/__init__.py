"""The `recqa` command line: runs the batch jobs in-process and starts the service as a process."""
