"""Trust features: when not to believe a prediction.

`quality` (image-quality checks on the raw upload), `ood` (is this input unlike the entry's
training data), `conformal` (prediction sets with a coverage guarantee) and `uncertainty`
(a second opinion on confidence). Each is fitted or measured by `training.trust` and its
parameters live in the entry's card, so the app, the API and the CLI report the same thing.
"""
