"""Text encoders that run a model: load its files, set the hub's environment, export it to ONNX.

The layer that runs the model, beside pipelines and serving: the batch jobs
(pipelines/transforms/encode.py), the service (serving/encoders.py) and evaluation
import it; features/ keeps only the `Encoder` protocol, which tests fill with a fake.
"""
