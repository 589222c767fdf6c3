"""Scores and what shows them: IoU and Dice, the model card, the figures of the data and of the model."""
