"""The model versions `pickle_models.ipynb` trains: one entry each, in release order.

The key is the version's name: its folder `functions/<name>/`, its image tag
`iris:<name>` and the name the HTTP function reports.
"""

from sklearn.svm import SVC, LinearSVC

MODELS = {
    "svc": lambda: SVC(kernel="linear"),
    "lin_svc": lambda: LinearSVC(random_state=0, max_iter=10_000),
}
