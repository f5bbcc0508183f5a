"""The output location: what the job may write there, what it may delete (only what it
provably wrote), and the checks made before any worker starts."""
