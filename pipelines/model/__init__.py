"""Scoring: the scorers inside Beam (RunInference), k-means clustering, the learned proxy
and which signals a job computes."""
