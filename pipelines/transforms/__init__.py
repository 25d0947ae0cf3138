"""Composite PTransforms and DoFns of the batch jobs; the logic they call lives in features/."""
