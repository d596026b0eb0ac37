"""NetTrain: options, data, the loop and its hooks, checkpoints, results."""
