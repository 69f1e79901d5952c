"""Benchmark fixture: the framework's ceiling, a function that answers a constant JSON object."""

ANSWER = {"predicted_class": "versicolor", "sepal_length": 5.8, "sepal_width": 3.4}


def ceiling(request):
    return ANSWER
