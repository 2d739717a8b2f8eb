"""Imagery ingestion, chip stacks, the dating network, change-point math, prediction and the MLflow registry."""

from model.buildings import Building
from model.timeline import Acquisition, Timeline

__all__ = ["Acquisition", "Building", "Timeline"]
