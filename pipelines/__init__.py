"""Batch jobs (Apache Beam) that turn raw records into Lance tables."""
